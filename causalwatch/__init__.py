"""causalwatch: streaming anomaly detection and causal root-cause explanation."""

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
