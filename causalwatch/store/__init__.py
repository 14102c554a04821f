"""The Redis adapters: checkpoints, partition checkpoints, the explainer lease, results,
feedback, the dependency-graph cache and the webhook outbox, over one redis-py client."""
