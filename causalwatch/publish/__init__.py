"""Publishers: Redis results, Prometheus metrics, webhooks, HTTP API (adapters)."""
