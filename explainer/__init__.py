"""explainer stage of causalwatch: dependency graph, online Granger, attribution, incidents.

Pure cores (numpy in, numpy/dataclasses out): :mod:`explainer.dag`, :mod:`explainer.granger`,
:mod:`explainer.attribution`, :mod:`explainer.history`, :mod:`explainer.core`. The one
adapter, :mod:`explainer.redis_dag_cache`, is imported on its own so the cores never pull
in redis.
"""

from explainer.attribution import Attribution, attribute, shapley_values
from explainer.core import Explainer, ExplainerConfig, IncidentSummary
from explainer.dag import DependencyGraph, Edge, load_graph, parse_graph
from explainer.granger import GrangerResult, GrangerState, benjamini_hochberg, select_pairs
from explainer.history import History

__all__ = [
    "Attribution",
    "DependencyGraph",
    "Edge",
    "Explainer",
    "ExplainerConfig",
    "GrangerResult",
    "GrangerState",
    "History",
    "IncidentSummary",
    "attribute",
    "benjamini_hochberg",
    "load_graph",
    "parse_graph",
    "select_pairs",
    "shapley_values",
]
