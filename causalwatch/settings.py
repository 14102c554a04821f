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
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
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
    "is_loopback",
    "load_settings",
    "redact_url",
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


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class KafkaSettings(_Section):
    """Broker connection, client choice, security, group timing and polling.

    Security (the same for consumers, producers and the admin client): ``security_protocol``
    ``SSL``/``SASL_SSL`` take ``ssl_cafile`` (else the system CAs), and for client
    certificates ``ssl_certfile`` with ``ssl_keyfile`` (and ``ssl_key_password`` when the
    key is encrypted); ``SASL_PLAINTEXT``/``SASL_SSL`` need ``sasl_mechanism``,
    ``sasl_username`` and ``sasl_password``. A setting that the protocol would ignore is an
    error, so a half-done configuration fails at start-up instead of connecting in clear.
    The files are loaded when the settings are, so a wrong path, a bad PEM or a key that
    does not match its certificate fails naming the setting. Passwords are ``SecretStr``:
    they never appear in ``repr``, logs or error messages.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "causalwatch"
    client_id: str = "causalwatch"
    #: Kafka client library: kafka-python (default), or librdkafka through confluent-kafka
    #: (``pip install causalwatch[fast]``), 3-4x faster per message.
    backend: Literal["kafka-python", "confluent"] = "kafka-python"
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
    # Records per poll at most. Both clients hand out one partition's buffered records
    # before the next, and the detector's cost per batch grows with the most samples of one
    # series in it (one vectorised pass per repeat), so small one-sample messages gain from
    # polls that span more partitions and fewer per-poll costs: 20,000 against 5,000 gave
    # `run all` +0-16 % at one sample per message (BENCHMARKS.md, "Throughput after
    # profiling"). Large messages are bounded by the clients' fetch buffers (tens of MB).
    max_poll_records: int = Field(default=20_000, ge=1)
    # While polls come back full (a backlog), up to this many are handled as one batch, so
    # a batch of small messages spans partitions (roles with one checkpoint of the whole
    # state: `all`, `ingest`, `explainer`); 1: one poll per batch. 4 runs one sample per
    # message at 1.2-1.3x raw kafka-python's rate at 0.1-1 % alerts (1: 0.58-0.65), same-run
    # A/B in BENCHMARKS.md. It was 1 while the hostile stream's RSS growth after warm-up
    # (tests/faults/test_hostile.py, bound 50 MB) reached 36-57 MB with 4; since the heap is
    # handed back after each checkpoint (causalwatch/app/heap.py) it is 27-30 MB with 4
    # against 21-31 MB with 1 (4 runs each).
    backlog_polls: int = Field(default=4, ge=1, le=64)
    # Pacing a backlog by data time (causalwatch/app/pipeline/pacing.py): records of a
    # partition whose data time is more than this many steps (the explainer's inferred
    # step) ahead of the slowest partition that still has data to read wait, and that
    # partition is paused, until the others catch up; 0 turns it off. Why: both clients
    # hand over hours of one partition before the next, and the explainer would rank an
    # incident before the other partitions' series have data for its minutes. 5 is a third
    # of the default incident window (explainer.incident_window_points, 15): the alerts of
    # one incident then see every series' data for at least two thirds of the window when
    # it is explained. Only the `all` role paces (it holds the explainer).
    pace_horizon_points: int = Field(default=5, ge=0, le=10_000)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    #: Codec of the batches this service produces (dead letters, internal topics). Every
    #: codec is always *consumed*, whatever this says.
    compression_type: Compression = "none"
    # Reconnect backoff: exponential from the first value to the cap, with jitter. The
    # libraries' 30 s cap (kafka-python) makes a client notice a returned broker up to
    # ~30 s late; 1 s keeps reconnection within a few seconds at a cost of one connection
    # attempt per second per broker while it is down.
    reconnect_backoff_ms: int = Field(default=50, ge=1)
    reconnect_backoff_max_ms: int = Field(default=1_000, ge=1)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    #: How long a producer or admin client waits for a first broker at start-up.
    bootstrap_timeout_ms: int = Field(default=10_000, ge=100)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    #: Check that the broker's certificate names the host connected to (keep on).
    ssl_check_hostname: bool = True

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

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"file {str(v)!r} does not exist")
        return v

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                "kafka.heartbeat_interval_ms must be below kafka.session_timeout_ms "
                f"(got {self.heartbeat_interval_ms} >= {self.session_timeout_ms})"
            )
        if self.reconnect_backoff_ms > self.reconnect_backoff_max_ms:
            raise ValueError(
                "kafka.reconnect_backoff_ms must not exceed kafka.reconnect_backoff_max_ms "
                f"(got {self.reconnect_backoff_ms} > {self.reconnect_backoff_max_ms})"
            )
        return self

    @model_validator(mode="after")
    def _backend_installed(self) -> KafkaSettings:
        import importlib.util

        if self.backend == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
            raise ValueError(
                "kafka.backend=confluent needs confluent-kafka: pip install 'causalwatch[fast]'"
            )
        return self

    @model_validator(mode="after")
    def _security_consistent(self) -> KafkaSettings:
        proto = self.security_protocol
        is_sasl = proto.startswith("SASL_")
        is_ssl = proto in ("SSL", "SASL_SSL")
        sasl = {
            "kafka.sasl_mechanism": self.sasl_mechanism,
            "kafka.sasl_username": self.sasl_username,
            "kafka.sasl_password": self.sasl_password,
        }
        if is_sasl:
            missing = [name for name, v in sasl.items() if not v]
            if missing:
                raise ValueError(
                    f"kafka.security_protocol={proto} needs {', '.join(missing)} "
                    "(SASL needs a mechanism, a user name and a password)"
                )
        else:
            stray = [name for name, v in sasl.items() if v is not None]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} set but kafka.security_protocol={proto} does not use "
                    "SASL (use SASL_SSL or SASL_PLAINTEXT, or remove them)"
                )
        ssl_files = {
            "kafka.ssl_cafile": self.ssl_cafile,
            "kafka.ssl_certfile": self.ssl_certfile,
            "kafka.ssl_keyfile": self.ssl_keyfile,
            "kafka.ssl_key_password": self.ssl_key_password,
        }
        if not is_ssl:
            stray = [name for name, v in ssl_files.items() if v is not None]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} set but kafka.security_protocol={proto} does not use "
                    "TLS (use SSL or SASL_SSL, or remove them)"
                )
            return self
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "kafka.ssl_certfile and kafka.ssl_keyfile go together (a client certificate "
                "needs its private key)"
            )
        if self.ssl_key_password is not None and self.ssl_keyfile is None:
            raise ValueError("kafka.ssl_key_password set without kafka.ssl_keyfile")
        _check_tls_files(self)
        return self


def _check_tls_files(k: KafkaSettings) -> None:
    """Load the CA and client certificate now, so a bad file fails at start-up by name."""
    import ssl

    ctx = ssl.create_default_context()
    if k.ssl_cafile is not None:
        try:
            ctx.load_verify_locations(cafile=str(k.ssl_cafile))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"kafka.ssl_cafile {str(k.ssl_cafile)!r} is not a PEM CA file: {exc}"
            ) from None
    if k.ssl_certfile is not None and k.ssl_keyfile is not None:
        password = k.ssl_key_password.get_secret_value() if k.ssl_key_password else None
        try:
            ctx.load_cert_chain(str(k.ssl_certfile), str(k.ssl_keyfile), password)
        except (ssl.SSLError, OSError) as exc:
            # The message of a wrong password is the library's, never the password.
            raise ValueError(
                f"kafka.ssl_certfile {str(k.ssl_certfile)!r} with kafka.ssl_keyfile "
                f"{str(k.ssl_keyfile)!r} cannot be loaded (not PEM, key does not match the "
                f"certificate, or wrong kafka.ssl_key_password): {type(exc).__name__}"
            ) from None


class IngestSettings(_Section):
    max_message_bytes: int = Field(default=1_048_576, ge=16)
    max_samples_per_message: int = Field(default=10_000, ge=1)
    # Labels per sample besides the metric name, in every format: a `__name__` in a JSON
    # `labels` object (prometheus-kafka-adapter, the name fallback) is not counted.
    max_labels: int = Field(default=32, ge=0)
    max_label_value_bytes: int = Field(default=1_024, ge=1)
    # Names longer than these (UTF-8 bytes) are dead-lettered (`name_too_long`,
    # `label_name_too_long`): Prometheus sets no limit, but a 100 kB name is an attack or a
    # bug, and every name is held in the series index and exported.
    max_name_bytes: int = Field(default=512, ge=1)
    max_label_name_bytes: int = Field(default=128, ge=1)
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
    # per-point tail probability 1e-4 at 60 s sampling, scaled to the series' interval
    # (the same false-alarm rate per day at any interval); see README "Detection defaults"
    alert_threshold: float = Field(default=0.9999, gt=0, lt=1)
    clear_threshold: float = Field(default=0.9, gt=0, lt=1)
    # 0: the de-duplication gap is 30 typical sampling intervals of each series (so 1 s
    # data and 5 min data work alike); a value in seconds sets a floor
    min_alert_gap_s: float = Field(default=0.0, ge=0)
    warmup_points: int = Field(default=30, ge=1)
    # ... and this much history (seconds) before a series is scored at all
    warmup_s: float = Field(default=240.0, ge=0)
    series_ttl_s: float = Field(default=3 * 86_400.0, gt=0)
    # auto: the compiled per-point loop (numba, extra [fast]) when importable, else numpy;
    # numpy: always the vectorised reference. Both give the same results.
    backend: Literal["auto", "numpy"] = "auto"
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
    # None: incident_window_points steps of the inferred sampling step
    incident_window_s: float | None = Field(default=None, gt=0)
    incident_window_points: int = Field(default=15, ge=1)
    # Pages on agreement (explainer.incidents): an incident pages (webhooks, Alertmanager)
    # only once its alerts come from page_agreement distinct (node, time) points (it is
    # explained and published while watching), i.e. two related nodes, or one node at two
    # times within the incident window (a single outlier, however many series of its node
    # show it, is one point); 1: every incident pages at its first alert. Or once one
    # alert's tail probability (1 - score) is at most page_overwhelming_p (None: off; the
    # single outliers of normal days reach the detector's float limit, so no level
    # separated them from faults: BENCHMARKS.md).
    page_agreement: int = Field(default=2, ge=1)
    page_overwhelming_p: float | None = Field(default=None, ge=0, lt=1)
    learn_graph: bool = True
    max_root_causes: int = Field(default=5, ge=1)
    # The explainer worker (causalwatch.app.pipeline.worker): incidents waiting to be
    # explained at most, and an incident re-explained at most once per this many steps of
    # the data (the step is inferred).
    queue_max_pending: int = Field(default=1_000, ge=1)
    update_interval_points: float = Field(default=3.0, ge=0)
    # While the consuming loop is busy (a backlog: it spends most of the wall clock handling
    # batches), the worker thread works at most this share of the wall clock, so ingest does
    # not slow down as the alert rate rises; 1: no limit. An idle loop never holds it back.
    worker_busy_share: float = Field(default=0.2, gt=0, le=1)
    # Ranking rules, each kept only where leaving one system out shows it helps (BENCHMARKS.md)
    no_graph_ranking: Literal["star", "robust_z"] = "robust_z"
    learned_edges_in_graph: bool = False
    # What an incident target's automatic explanation is (explainer.incidents): "run" (at
    # its strongest recent alert, the window the run of anomalous bins ending there) or
    # "now" (at its newest data, the window from its first alert, at most anomaly_points
    # bins, updated on new data while it deviates); each is the on-demand answer at that
    # moment (with that start). "now": +0.19 PetShop automatic, -1 Nezha TT injection
    explain_window: Literal["run", "now"] = "run"
    # Replicas of `run explainer` share one lease: the holder works, the others stand by
    # and take over within this many seconds when it stops renewing.
    lease_ttl_s: float = Field(default=15.0, ge=1.0)
    # The incident page's plots: samples with the detector's expected value and band kept
    # per series by the explaining process (28 bytes per point per series); 0: no plots.
    trail_points: int = Field(default=150, ge=0, le=10_000)

    @field_validator("trail_points")
    @classmethod
    def _trail_points(cls, v: int) -> int:
        if v == 1:
            raise ValueError("must be 0 (no plots) or at least 2 (got 1)")
        return v

    @field_validator("graph_file")
    @classmethod
    def _graph_exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"graph file {str(v)!r} does not exist")
        return v


class RedisSettings(_Section):
    """Redis connection, authentication and TLS.

    Authentication: ``username`` (a Redis 6+ ACL user) with ``password``, or ``password``
    alone (the ``default`` user / ``requirepass``). TLS: ``tls: true`` (or a ``rediss://``
    URL) with ``ssl_ca_certs`` (else the system CAs), and for client certificates
    ``ssl_certfile`` with ``ssl_keyfile`` (and ``ssl_key_password`` for an encrypted key).
    The files are loaded when the settings are, so a wrong path, a bad PEM or a key that
    does not match fails at start-up naming the setting.
    A password inside the URL is refused (it would be shown wherever the URL is): use
    ``redis.password``, a ``SecretStr`` never shown in ``repr``, logs or error messages.
    """

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "causalwatch:"
    stream_maxlen: int = Field(default=10_000, ge=1)
    latest_ttl_s: int = Field(default=86_400, ge=1)
    checkpoint_interval_s: float = Field(default=5.0, gt=0)
    # A lost checkpoint (Redis restarted without persistence) is rebuilt by re-learning up
    # to this many records per partition before Kafka's committed offset, publishing nothing.
    checkpoint_rebuild_records: int = Field(default=100_000, ge=0)
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = None
    tls: bool = False
    ssl_ca_certs: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None
    #: Check that the server's certificate names the host connected to (keep on).
    ssl_check_hostname: bool = True

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"must start with redis://, rediss:// or unix:// (got {redact_url(v)!r})"
            )
        from urllib.parse import urlsplit

        try:
            has_password = urlsplit(v).password is not None
        except ValueError:
            has_password = False
        if has_password:
            raise ValueError(
                f"{redact_url(v)!r} holds a password: set redis.password "
                "(env CAUSALWATCH_REDIS__PASSWORD) instead, so it is never shown"
            )
        return v

    @field_validator("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
    @classmethod
    def _readable_file(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"file {str(v)!r} does not exist")
        return v

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.url.startswith("rediss://")

    @model_validator(mode="after")
    def _tls_consistent(self) -> RedisSettings:
        files = {
            "redis.ssl_ca_certs": self.ssl_ca_certs,
            "redis.ssl_certfile": self.ssl_certfile,
            "redis.ssl_keyfile": self.ssl_keyfile,
            "redis.ssl_key_password": self.ssl_key_password,
        }
        if not self.uses_tls:
            stray = [name for name, v in files.items() if v is not None]
            if stray:
                raise ValueError(
                    f"{', '.join(stray)} set but redis.tls is false and redis.url is not "
                    "rediss:// (set redis.tls=true, or remove them)"
                )
            return self
        if self.url.startswith("unix://"):
            raise ValueError("redis.tls=true with a unix:// redis.url (TLS needs TCP)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError(
                "redis.ssl_certfile and redis.ssl_keyfile go together (a client certificate "
                "needs its private key)"
            )
        if self.ssl_key_password is not None and self.ssl_keyfile is None:
            raise ValueError("redis.ssl_key_password set without redis.ssl_keyfile")
        _check_redis_tls_files(self)
        return self

    @model_validator(mode="after")
    def _user_needs_password(self) -> RedisSettings:
        if self.username is not None and self.password is None:
            raise ValueError("redis.username set without redis.password (an ACL user needs one)")
        return self


def _check_redis_tls_files(r: RedisSettings) -> None:
    """Load the CA and client certificate now, so a bad file fails at start-up by name."""
    import ssl

    ctx = ssl.create_default_context()
    if r.ssl_ca_certs is not None:
        try:
            ctx.load_verify_locations(cafile=str(r.ssl_ca_certs))
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(
                f"redis.ssl_ca_certs {str(r.ssl_ca_certs)!r} is not a PEM CA file: {exc}"
            ) from None
    if r.ssl_certfile is not None and r.ssl_keyfile is not None:
        password = r.ssl_key_password.get_secret_value() if r.ssl_key_password else None
        try:
            ctx.load_cert_chain(str(r.ssl_certfile), str(r.ssl_keyfile), password)
        except (ssl.SSLError, OSError) as exc:
            # The library's message of a wrong password is shown by type only: never the key.
            raise ValueError(
                f"redis.ssl_certfile {str(r.ssl_certfile)!r} with redis.ssl_keyfile "
                f"{str(r.ssl_keyfile)!r} cannot be loaded (not PEM, key does not match the "
                f"certificate, or wrong redis.ssl_key_password): {type(exc).__name__}"
            ) from None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs).

    >>> redact_url("redis://app:s3cret@h:6379/0")
    'redis://app:***@h:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{slash}{path}"


class WebhookSettings(_Section):
    url: str
    kind: Literal["generic", "slack", "alertmanager"] = "generic"
    secret: str | None = None


class PublishSettings(_Section):
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65_535)
    metrics_max_series: int = Field(default=1_000, ge=0)
    #: Cap on the label text of the per-series/node/incident families of one scrape.
    metrics_max_bytes: int = Field(default=8 * 1_048_576, ge=65_536)
    webhooks: list[WebhookSettings] = Field(default_factory=list)
    # Outgoing webhook outbox (causalwatch/publish/webhooks.py): retries with exponential
    # backoff and full jitter, capped; after the last attempt an entry is kept as dead.
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    # Give-up is time-based: an entry is retried until it is webhook_give_up_s old (a receiver
    # down for hours loses nothing); webhook_max_attempts, when set, also caps the attempts.
    webhook_max_attempts: int | None = Field(default=None, ge=1)
    webhook_give_up_s: float = Field(default=86_400.0, gt=0)
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
    """The HTTP API. Beyond loopback it needs ``token`` unless ``allow_unauthenticated``
    says so explicitly (anyone who can reach the port could mute alerts and rewrite the
    graph). Request bodies are capped at ``max_body_bytes`` (413 beyond), and the token is
    checked before any byte of the body is read."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65_535)
    token: SecretStr | None = None
    #: Serve without a token on a non-loopback ``host`` (a trusted network only).
    allow_unauthenticated: bool = False
    max_body_bytes: int = Field(default=8 * 1_048_576, ge=1_024)
    # Incoming Alertmanager webhook: bounded queue (503 when full) and enrichment workers.
    alert_queue_size: int = Field(default=256, ge=1)
    alert_workers: int = Field(default=2, ge=1, le=32)
    # Base URL users reach this API at (behind a proxy, say): links to the incident page in
    # webhook bodies and the demo. None: no links.
    external_url: str | None = None

    @field_validator("external_url")
    @classmethod
    def _external_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parsed = urlsplit(v.strip())
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"must be an absolute http:// or https:// URL (got {v!r})")
        if parsed.query or parsed.fragment:
            raise ValueError(f"must have no query or fragment (got {v!r})")
        return v.strip().rstrip("/")

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("api.token is empty (unset it to disable authentication)")
        return v

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> ApiSettings:
        if self.token is None and not self.allow_unauthenticated and not is_loopback(self.host):
            raise ValueError(
                f"api.host={self.host!r} listens beyond loopback and api.token is not set: "
                "set api.token (env CAUSALWATCH_API__TOKEN), or api.allow_unauthenticated=true "
                "(env CAUSALWATCH_API__ALLOW_UNAUTHENTICATED) to serve without authentication"
            )
        return self


def is_loopback(host: str) -> bool:
    """True for a host that only this machine can reach (``localhost``, 127/8, ``::1``).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    import ipaddress

    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


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
            f"{_got(loc, err.get('input'))}",
            setting=dotted,
        ) from None  # the cause's text holds the input, secrets included
    except SettingsError as exc:
        raise ConfigError(f"invalid settings: {exc} ({exc.__cause__})", setting="settings") from exc
    finally:
        _yaml_path.value = None


_SECRET_WORDS = ("password", "secret", "token")


def _got(loc: tuple[int | str, ...], value: Any) -> str:
    """`` (got ...)`` for an error message, never with a secret in it."""
    last = str(loc[-1]).lower() if loc else ""
    if any(w in last for w in _SECRET_WORDS):
        return " (value hidden: secret)"
    if isinstance(value, dict | list | tuple | BaseModel):
        return ""  # a whole section: its secrets would be shown; the message names fields
    if isinstance(value, str) and "://" in value:
        return f" (got {redact_url(value)!r})"  # a URL may hold a password
    return f" (got {value!r})"


def environ_snapshot(prefix: str = ENV_PREFIX) -> dict[str, str]:
    """The ``CAUSALWATCH_*`` variables now set (for tests and diagnostics)."""
    return {k: v for k, v in os.environ.items() if k.startswith(prefix)}
