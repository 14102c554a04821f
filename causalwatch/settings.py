"""The one settings model: environment variables ``CAUSALWATCH_*`` plus an optional YAML file.

Nested settings use ``__`` as the delimiter: ``CAUSALWATCH_KAFKA__BOOTSTRAP_SERVERS``,
``CAUSALWATCH_DETECTOR__ALERT_THRESHOLD``. Precedence, highest first: keyword arguments,
environment variables, the YAML file (``--config FILE`` or ``CAUSALWATCH_CONFIG``), defaults.

This is the only module that reads the environment. :func:`load_settings` turns every
validation failure into a :class:`~causalwatch.errors.ConfigError` whose message names the
setting and its environment variable, so a wrong value fails at start-up, not mid-stream.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from causalwatch.errors import ConfigError

__all__ = [
    "ApiSettings",
    "DetectorSettings",
    "ExplainerSettings",
    "IngestSettings",
    "KafkaSettings",
    "PublishSettings",
    "RedisSettings",
    "Settings",
    "TopicSettings",
    "WebhookSettings",
    "load_settings",
]

ENV_PREFIX = "CAUSALWATCH_"
ENV_DELIMITER = "__"

Format = Literal["auto", "json", "prometheus", "influx"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSettings(_Section):
    """One input topic and its record format (``auto`` detects per record)."""

    name: str = Field(min_length=1)
    format: Format = "auto"


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "causalwatch"
    client_id: str = "causalwatch"
    topics: Annotated[list[TopicSettings], NoDecode] = Field(
        default_factory=lambda: [TopicSettings(name="metrics")]
    )
    dlq_suffix: str = ".dlq"
    # Internal topics used when stages run as separate processes (`run ingest|detector|...`).
    samples_topic: str = "causalwatch.samples"
    scores_topic: str = "causalwatch.scores"
    internal_partitions: int = Field(default=4, ge=1, le=1024)
    # kafka-python 3 defaults (45 s session) make group joins slow; these keep joins ~3 s.
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=2_000, ge=100)
    max_poll_interval_ms: int = Field(default=60_000, ge=1_000)
    poll_timeout_ms: int = Field(default=200, ge=0)
    max_poll_records: int = Field(default=5_000, ge=1)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"

    @field_validator("topics", mode="before")
    @classmethod
    def _topics_from_string(cls, v: Any) -> Any:
        # `CAUSALWATCH_KAFKA__TOPICS=metrics,telegraf:influx` is easier than JSON in a shell.
        if isinstance(v, str) and v.lstrip().startswith("["):
            import json

            return json.loads(v)
        if isinstance(v, str):
            out = []
            for part in v.split(","):
                part = part.strip()
                if not part:
                    continue
                name, _, fmt = part.partition(":")
                out.append({"name": name, "format": fmt or "auto"})
            return out
        return v

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                "kafka.heartbeat_interval_ms must be below kafka.session_timeout_ms "
                f"(got {self.heartbeat_interval_ms} >= {self.session_timeout_ms})"
            )
        return self


class IngestSettings(_Section):
    max_message_bytes: int = Field(default=1_048_576, ge=16)
    max_samples_per_message: int = Field(default=10_000, ge=1)
    max_labels: int = Field(default=32, ge=0)
    max_label_value_bytes: int = Field(default=1_024, ge=1)
    max_series: int = Field(default=200_000, ge=1)
    max_future_s: float = Field(default=300.0, ge=0)
    max_age_s: float = Field(default=7 * 86_400.0, gt=0)
    node_label: str = Field(default="service", min_length=1)


class SensitivityRule(_Section):
    """How readily series with these labels alert: the tail probability used for alerting
    is divided by ``factor`` (below 1: quieter, above 1: louder). ``__name__`` matches the
    metric name."""

    matchers: dict[str, str] = Field(min_length=1)
    factor: float = Field(gt=0, allow_inf_nan=False)


class DetectorSettings(_Section):
    season_s: float = Field(default=86_400.0, gt=0)
    alert_threshold: float = Field(default=0.993, gt=0, lt=1)
    clear_threshold: float = Field(default=0.9, gt=0, lt=1)
    min_alert_gap_s: float = Field(default=900.0, ge=0)
    warmup_points: int = Field(default=30, ge=1)
    series_ttl_s: float = Field(default=3 * 86_400.0, gt=0)
    #: per label set sensitivity; the first rule whose matchers all match a series applies
    sensitivity: tuple[SensitivityRule, ...] = ()

    @model_validator(mode="after")
    def _clear_below_alert(self) -> DetectorSettings:
        if self.clear_threshold >= self.alert_threshold:
            raise ValueError(
                "detector.clear_threshold must be below detector.alert_threshold "
                f"(got {self.clear_threshold} >= {self.alert_threshold})"
            )
        return self


class ExplainerSettings(_Section):
    graph_file: Path | None = None
    history_points: int = Field(default=512, ge=32)
    reference_points: int = Field(default=120, ge=10)
    anomaly_points: int = Field(default=10, ge=1)
    incident_window_s: float = Field(default=900.0, gt=0)
    learn_graph: bool = True
    max_root_causes: int = Field(default=5, ge=1)
    # Replicas of `run explainer` share one lease: the holder works, the others stand by
    # and take over within this many seconds when it stops renewing.
    lease_ttl_s: float = Field(default=15.0, ge=1.0)

    @field_validator("graph_file")
    @classmethod
    def _graph_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"graph file {str(v)!r} does not exist")
        return v


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "causalwatch:"
    stream_maxlen: int = Field(default=10_000, ge=1)
    latest_ttl_s: int = Field(default=86_400, ge=1)
    checkpoint_interval_s: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"must start with redis://, rediss:// or unix:// (got {v!r})")
        return v


class WebhookSettings(_Section):
    url: str
    kind: Literal["generic", "slack", "alertmanager"] = "generic"
    secret: str | None = None


class PublishSettings(_Section):
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65_535)
    metrics_max_series: int = Field(default=1_000, ge=0)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    # Outgoing webhook outbox (causalwatch/publish/webhooks.py): retries with exponential
    # backoff and full jitter, capped; after the last attempt an entry is kept as dead.
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    webhook_max_attempts: int = Field(default=10, ge=1)
    webhook_backoff_base_s: float = Field(default=1.0, gt=0)
    webhook_backoff_cap_s: float = Field(default=300.0, gt=0)
    webhook_poll_interval_s: float = Field(default=0.5, gt=0)
    webhook_batch: int = Field(default=64, ge=1)
    webhook_concurrency: int = Field(default=4, ge=1, le=64)
    # How long a delivered (incident, target, version, url) is remembered to drop duplicates.
    webhook_dedupe_ttl_s: int = Field(default=7 * 86_400, ge=1)
    # Dead deliveries kept for inspection/retry; the oldest are dropped past this many.
    webhook_dead_max: int = Field(default=10_000, ge=1)


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65_535)
    token: str | None = None
    # Incoming Alertmanager webhook: bounded queue (503 when full) and enrichment workers.
    alert_queue_size: int = Field(default=256, ge=1)
    alert_workers: int = Field(default=2, ge=1, le=32)


class Settings(BaseSettings):
    """All of causalwatch's configuration. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    explainer: ExplainerSettings = Field(default_factory=ExplainerSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    publish: PublishSettings = Field(default_factory=PublishSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _yaml_path.get()
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


class _YamlPath:
    """Holds the YAML path for the duration of one ``load_settings`` call."""

    value: Path | None = None

    def get(self) -> Path | None:
        return self.value


_yaml_path = _YamlPath()


def env_var_for(loc: tuple[int | str, ...]) -> str:
    """``("kafka", "group_id")`` -> ``CAUSALWATCH_KAFKA__GROUP_ID``."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in parts)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings once, at start-up.

    Raises
    ------
    ConfigError
        naming the first invalid setting, its env var and the reason.
    """
    path = config_file if config_file is not None else os.environ.get(ENV_PREFIX + "CONFIG")
    yaml_path = Path(path) if path else None
    if yaml_path is not None and not yaml_path.is_file():
        raise ConfigError(
            f"config file {str(yaml_path)!r} does not exist (from --config or {ENV_PREFIX}CONFIG)",
            setting="config",
        )
    _yaml_path.value = yaml_path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        dotted = ".".join(str(p) for p in loc) or "settings"
        raise ConfigError(
            f"invalid setting {dotted} (env {env_var_for(loc)}): {err.get('msg')}"
            f" (got {err.get('input')!r})",
            setting=dotted,
        ) from exc
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc} ({exc.__cause__})", setting="settings") from exc
    finally:
        _yaml_path.value = None


def environ_snapshot(prefix: str = ENV_PREFIX) -> dict[str, str]:
    """The ``CAUSALWATCH_*`` variables now set (for tests and diagnostics)."""
    return {k: v for k, v in os.environ.items() if k.startswith(prefix)}
