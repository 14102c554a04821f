"""explainer stage of causalwatch: dependency graph, online Granger, attribution, incidents.

Pure cores (numpy in, numpy/dataclasses out), one idea per module:

- :mod:`explainer.core`: the :class:`Explainer` facade that composes the others;
- :mod:`explainer.config`: :class:`ExplainerConfig`;
- :mod:`explainer.results`: the typed results (frozen dataclasses; the pydantic
  ``Explanation`` is built from them at the edge, ``Explanation.from_result``);
- :mod:`explainer.history` (aligned history), :mod:`explainer.view`, :mod:`explainer.windows`;
- :mod:`explainer.learning` (online Granger learning) over :mod:`explainer.granger`;
- :mod:`explainer.ranking` (one target's root causes) with :mod:`explainer.candidates`,
  :mod:`explainer.scoring` and :mod:`explainer.attribution`;
- :mod:`explainer.incidents` (grouping, re-explaining, versions) with :mod:`explainer.impact`;
- :mod:`explainer.dag`: the dependency graph.

The one adapter, :mod:`explainer.redis_dag_cache`, is imported on its own so the cores never
pull in redis.
"""

from explainer.attribution import Attribution, attribute, shapley_values
from explainer.config import ExplainerConfig
from explainer.core import Explainer
from explainer.dag import DependencyGraph, Edge, load_graph, parse_graph
from explainer.granger import GrangerResult, GrangerState, benjamini_hochberg, select_pairs
from explainer.history import History
from explainer.incidents import Incidents, Ranker
from explainer.learning import GrangerLearner
from explainer.ranking import rank
from explainer.results import (
    Evidence,
    ExplanationResult,
    GrangerEvidence,
    IncidentSummary,
    MechanismEvidence,
    PointCounts,
    Ranking,
    RootCauseResult,
    Span,
    TargetRef,
)
from explainer.view import View

__all__ = [
    "Attribution",
    "DependencyGraph",
    "Edge",
    "Evidence",
    "Explainer",
    "ExplainerConfig",
    "ExplanationResult",
    "GrangerEvidence",
    "GrangerLearner",
    "GrangerResult",
    "GrangerState",
    "History",
    "IncidentSummary",
    "Incidents",
    "MechanismEvidence",
    "PointCounts",
    "Ranker",
    "Ranking",
    "RootCauseResult",
    "Span",
    "TargetRef",
    "View",
    "attribute",
    "benjamini_hochberg",
    "load_graph",
    "parse_graph",
    "rank",
    "select_pairs",
    "shapley_values",
]
