"""Publishers that are not Redis: Prometheus metrics, webhook delivery, the HTTP API (adapters)."""
