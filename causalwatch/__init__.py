"""causalwatch: streaming anomaly detection and causal root-cause explanation.

The modules of this package are the contracts every layer shares: :mod:`~causalwatch.errors`,
:mod:`~causalwatch.models` (plain dataclasses), :mod:`~causalwatch.series`,
:mod:`~causalwatch.wire`, and at the edges :mod:`~causalwatch.settings` and
:mod:`~causalwatch.schemas` (pydantic). Importing this package loads no pydantic. The
subpackages are the layers above: :mod:`causalwatch.app` (the one wiring and what runs it),
:mod:`causalwatch.store` (Redis adapters), :mod:`causalwatch.publish` (metrics, webhooks, the
HTTP API) and :mod:`causalwatch.tooling` (embedded servers, simulator).
"""

from causalwatch.errors import (
    BackendError,
    CausalwatchError,
    ConfigError,
    DecodeError,
    GraphError,
    RecordError,
    SchemaError,
    StateError,
)
from causalwatch.models import AnomalyEvent, Explanation, RootCause, SampleBatch
from causalwatch.series import SeriesIndex, series_key

__version__ = "0.1.0"

__all__ = [
    "AnomalyEvent",
    "BackendError",
    "CausalwatchError",
    "ConfigError",
    "DecodeError",
    "Explanation",
    "GraphError",
    "RecordError",
    "RootCause",
    "SampleBatch",
    "SchemaError",
    "SeriesIndex",
    "StateError",
    "__version__",
    "series_key",
]
