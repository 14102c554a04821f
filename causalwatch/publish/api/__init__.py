"""The HTTP API (FastAPI): :func:`create_app` builds it from injected stores and callables."""

from causalwatch.publish.api.app import create_app
from causalwatch.publish.api.enrich import AlertEnricher, alert_target, parse_rfc3339

__all__ = ["AlertEnricher", "alert_target", "create_app", "parse_rfc3339"]
