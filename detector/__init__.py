"""Streaming anomaly detection: one vectorised, causal detector for many series.

Convention (as in river): ``score_many`` is read-only and returns scores where higher means
more anomalous; ``learn_many`` updates state and returns nothing; ``step`` scores, runs the
alert state machine, then learns.
"""

from detector.core import SCHEMA_VERSION, Detector, DetectorConfig, DetectorResult

__all__ = ["SCHEMA_VERSION", "Detector", "DetectorConfig", "DetectorResult"]
