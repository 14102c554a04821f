"""The one wiring: source -> decode -> detect -> explain -> publish.

This package is the only place that composes the stages. :func:`build_pipeline` builds a
:class:`Pipeline` for one process role from the settings and the adapters it is given
(:class:`Adapters`: a source factory, sinks, stores, a clock); the live service passes Kafka
and Redis adapters (:mod:`causalwatch.app.service`), offline replay and the benchmarks pass
none and feed decoded batches through :meth:`Pipeline.decode` / :meth:`Pipeline.process`
(:mod:`causalwatch.app.replay`). The same functions run in every case; only the source and
the sinks differ.

Layers, from pure to I/O:

- :mod:`~causalwatch.app.pipeline.steps` (pure, no I/O): :func:`ingest_records` turns raw
  records into rows + samples + record errors; :func:`process_samples` runs detector and
  explainer over one batch; its explain step is :func:`explain_events`, the one place
  alerts become explanations (grouped into incidents and queued);
- :mod:`~causalwatch.app.pipeline.worker`: the explainer worker and its bounded, coalescing
  queue (:class:`ExplainQueue`, :class:`ExplainWorker`): explanations off the hot path, and
  the rule of what is explained when (onset first, then updates as evidence grows);
- :mod:`~causalwatch.app.pipeline.stages`: the ``*Stage`` classes add the adapters
  (dead-letter topic, Redis, webhooks, internal topics) for one process role: ``all``,
  ``ingest``, ``detector`` or ``explainer``; their between-batch hooks
  (:mod:`causalwatch.app.sync`) and the partition handover (:mod:`causalwatch.app.partitions`)
  are passed to their constructors;
- :mod:`~causalwatch.app.pipeline.loop`: :func:`run_stage`, poll, handle, checkpoint, commit;
- :mod:`~causalwatch.app.pipeline.build`: :class:`Adapters`, :class:`Pipeline` and
  :func:`build_pipeline`.

At-least-once: a batch's outputs are published, or held in the checkpoint (explanations
pending in the worker's queue, or built and not yet published), before its offsets can be
committed, and offsets are committed only after the checkpoint that covers them is in Redis.
"""

from causalwatch.app.pipeline.build import (
    Adapters,
    Pipeline,
    Resume,
    Revoke,
    SourceFactory,
    build_pipeline,
)
from causalwatch.app.pipeline.loop import Source, run_stage
from causalwatch.app.pipeline.stages import (
    STAGES,
    AllStage,
    DetectorStage,
    ExplainerStage,
    IngestStage,
    PartitionStore,
    Role,
    Sinks,
    Stage,
    Timers,
)
from causalwatch.app.pipeline.steps import (
    Cores,
    StepOutput,
    apply_sensitivity,
    build_cores,
    detector_config,
    evict_stale,
    explain_events,
    explainer_config,
    in_order_mask,
    incident_counts,
    incident_scores,
    ingest_limits,
    ingest_records,
    process_samples,
    sensitivity_for,
    series_view,
)
from causalwatch.app.pipeline.worker import ExplainQueue, ExplainWorker

__all__ = [
    "STAGES",
    "Adapters",
    "AllStage",
    "Cores",
    "DetectorStage",
    "ExplainQueue",
    "ExplainWorker",
    "ExplainerStage",
    "IngestStage",
    "PartitionStore",
    "Pipeline",
    "Resume",
    "Revoke",
    "Role",
    "Sinks",
    "Source",
    "SourceFactory",
    "Stage",
    "StepOutput",
    "Timers",
    "apply_sensitivity",
    "build_cores",
    "build_pipeline",
    "detector_config",
    "evict_stale",
    "explain_events",
    "explainer_config",
    "in_order_mask",
    "incident_counts",
    "incident_scores",
    "ingest_limits",
    "ingest_records",
    "process_samples",
    "run_stage",
    "sensitivity_for",
    "series_view",
]
