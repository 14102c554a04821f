"""The explainer's hyperparameters, validated when built and stored verbatim."""

from __future__ import annotations

from dataclasses import dataclass

from causalwatch.errors import StateError

__all__ = ["ExplainerConfig"]


@dataclass(frozen=True)
class ExplainerConfig:
    """Explainer hyperparameters (stored verbatim; see ``causalwatch.settings``).

    Times are unix seconds; ``*_points`` count aligned time bins of ``step_s`` seconds.
    ``step_s=None`` infers the step from the first series with three samples.
    """

    history_points: int = 512
    reference_points: int = 120
    anomaly_points: int = 10
    #: an incident takes events this long after its last one: ``incident_window_s`` when
    #: set, else ``incident_window_points`` steps of the data (works at any sampling step)
    incident_window_s: float | None = None
    incident_window_points: int = 15
    #: an incident pages once its alerts come from this many distinct (node, time) points
    #: (two related nodes, or one node at two times); 1: every incident pages at once
    page_agreement: int = 2
    #: ... or once one alert's tail probability (``1 - score``) is at most this (None: off)
    page_overwhelming_p: float | None = None
    learn_graph: bool = True
    max_root_causes: int = 5
    step_s: float | None = None
    anomaly_z: float = 3.0
    granger_max_lag: int = 2
    granger_forgetting: float = 0.999
    granger_alpha: float = 0.01
    granger_pairs_per_series: int = 4
    granger_refresh_steps: int = 64
    granger_min_points: int = 48
    granger_window_points: int = 128
    granger_max_screen_series: int = 2000
    n_samples: int = 256
    n_permutations: int = 32
    exact_max: int = 8
    model_lags: int = 1
    propagate_impact: bool = True
    seed: int = 0
    #: with no given edge to the target: ``star`` (the SCM over the moved nodes as direct
    #: parents) or ``robust_z`` (each node's most deviated series by robust z, as BARO)
    no_graph_ranking: str = "robust_z"
    #: learned Granger edges join a given graph's structure (candidates, paths) only when
    #: True; otherwise they are evidence (the Granger bonus), and structure is the user's
    learned_edges_in_graph: bool = False
    #: what an incident target's automatic explanation is: ``run`` (at its strongest
    #: recent alert, the window the run of anomalous target bins ending there) or ``now``
    #: (at its newest data, the window from its first alert, at most ``anomaly_points``
    #: bins, re-explained on new data while it still deviates): the on-demand answer at
    #: that moment with that ``window_start``. ``now`` is not the default: leaving one
    #: system out it costs the worst system (Nezha TT) one injection (BENCHMARKS.md)
    explain_window: str = "run"

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool, object]] = [
            ("history_points", self.history_points >= 16, self.history_points),
            ("reference_points", self.reference_points >= 3, self.reference_points),
            ("anomaly_points", self.anomaly_points >= 1, self.anomaly_points),
            (
                "incident_window_s",
                self.incident_window_s is None or self.incident_window_s > 0,
                self.incident_window_s,
            ),
            (
                "incident_window_points",
                self.incident_window_points >= 1,
                self.incident_window_points,
            ),
            ("page_agreement", self.page_agreement >= 1, self.page_agreement),
            (
                "page_overwhelming_p",
                self.page_overwhelming_p is None or 0.0 <= self.page_overwhelming_p < 1.0,
                self.page_overwhelming_p,
            ),
            ("max_root_causes", self.max_root_causes >= 1, self.max_root_causes),
            ("step_s", self.step_s is None or self.step_s > 0, self.step_s),
            ("granger_max_lag", self.granger_max_lag >= 1, self.granger_max_lag),
            ("granger_forgetting", 0 < self.granger_forgetting <= 1, self.granger_forgetting),
            ("granger_alpha", 0 < self.granger_alpha < 1, self.granger_alpha),
            ("model_lags", 0 <= self.model_lags <= 5, self.model_lags),
            (
                "no_graph_ranking",
                self.no_graph_ranking in ("star", "robust_z"),
                self.no_graph_ranking,
            ),
            (
                "explain_window",
                self.explain_window in ("run", "now"),
                self.explain_window,
            ),
        ]
        for name, ok, value in checks:
            if not ok:
                raise StateError(f"explainer config {name} is invalid (got {value!r})")
