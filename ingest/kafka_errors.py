"""The one place where Kafka client errors become :class:`~causalwatch.errors.BackendError`.

Every call into kafka-python or confluent-kafka in the adapters runs inside
:func:`map_kafka_errors`, as httpx runs every transport call inside
``map_httpcore_exceptions``: no ``kafka.errors`` or ``confluent_kafka`` exception escapes,
and every ``BackendError`` says whether trying again can help (``retryable``), so the run
loop can pause and retry while a broker is away and stop on misuse (authentication, an
unknown topic with auto-creation off, a bad configuration).

Messages never carry a secret: the libraries do not put passwords in their errors, and
:func:`redact` removes the configured ones anyway (a password can turn up in a library's
message, for example echoed back by a broker).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterable, Iterator

from causalwatch.errors import BackendError

__all__ = [
    "backend_error",
    "demote_close_cancellations",
    "map_kafka_errors",
    "redact",
    "redact_library_logs",
]

# Error names that mean "will not get better by retrying" in both libraries.
_FATAL_NAMES = (
    "Authentication",
    "Authorization",
    "SaslAuthentication",
    "UnsupportedSaslMechanism",
    "IllegalSaslState",
    "KafkaConfigurationError",
    "InvalidConfiguration",
    "UnsupportedVersion",
    "RecordTooLarge",
    "MessageSizeTooLarge",
    "InvalidTopic",
    "UnsupportedCodec",
)
# librdkafka error codes (confluent_kafka.KafkaError) that are not retryable although the
# library does not flag them fatal.
_RDKAFKA_FATAL = {
    "_AUTHENTICATION",
    "_SSL",
    "_INVALID_ARG",
    "_UNKNOWN_TOPIC",
    "TOPIC_AUTHORIZATION_FAILED",
    "GROUP_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "SASL_AUTHENTICATION_FAILED",
    "UNSUPPORTED_SASL_MECHANISM",
    "MSG_SIZE_TOO_LARGE",
    "TOPIC_EXCEPTION",
}


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every non-empty secret replaced by ``***``.

    >>> redact("login as bob with hunter2 failed", ["hunter2", None, ""])
    'login as bob with *** failed'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _RedactFilter(logging.Filter):
    """Replaces secrets in a record's formatted message (kafka-python logs every request at
    DEBUG, a SASL/PLAIN authentication request with the password in it)."""

    def __init__(self) -> None:
        super().__init__("causalwatch-redact")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted: let logging report it
            return True
        clean = redact(text, self.secrets)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_REDACT = _RedactFilter()


def redact_library_logs(secrets: Iterable[str]) -> None:
    """Keep ``secrets`` out of what the Kafka libraries log, at any level.

    Adds them (and their ``bytes`` repr forms) to a filter on every ``kafka.*`` logger that
    exists now (kafka-python creates them when imported, before any client) and on
    librdkafka's (``ingest.librdkafka``).
    """
    for secret in secrets:
        if secret:
            _REDACT.secrets.add(secret)
            _REDACT.secrets.add(repr(secret.encode())[2:-1])
    names = [n for n in logging.Logger.manager.loggerDict if n == "kafka" or n.startswith("kafka.")]
    for name in [*names, "ingest.librdkafka"]:
        logger = logging.getLogger(name)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


class _CancelledOnClose(logging.Filter):
    """Logs a request that failed with kafka-python's ``Cancelled`` at INFO, not ERROR.

    ``Cancelled`` is what kafka-python gives in-flight requests when their connection is
    closed without an error (a client closing, a consumer handing back its partitions);
    kafka-python's own fetcher logs it at INFO, but its metadata refresh logs it as
    ``ERROR Metadata refresh: failed Cancelled``, which reads like an outage to a person
    watching a clean shutdown. A lost connection fails its requests with the real error,
    which stays an ERROR.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or not isinstance(record.args, tuple):
            return True
        if not any(type(a).__name__ == "Cancelled" for a in record.args):
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


_CANCELLED = _CancelledOnClose("causalwatch-cancelled")


def demote_close_cancellations() -> None:
    """Install :class:`_CancelledOnClose` on kafka-python's ``kafka.cluster`` logger."""
    logger = logging.getLogger("kafka.cluster")
    if _CANCELLED not in logger.filters:
        logger.addFilter(_CANCELLED)


def _is_library_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("kafka", "confluent_kafka", "cimpl"))


def _retryable(exc: BaseException) -> bool:
    name = type(exc).__name__
    # confluent_kafka.KafkaException carries a KafkaError with its own flags
    inner = exc.args[0] if exc.args else None
    if inner is not None and hasattr(inner, "retriable") and hasattr(inner, "fatal"):
        code = str(inner.name()) if hasattr(inner, "name") else ""
        # transport, timeouts, broker gone: librdkafka retries these itself
        return not (inner.fatal() or code in _RDKAFKA_FATAL)
    if isinstance(exc, ssl.SSLError):
        return False  # a certificate or protocol mismatch does not heal by retrying
    if any(part in name for part in _FATAL_NAMES):
        return False
    if bool(getattr(exc, "retriable", False)) or "Timeout" in name:
        return True
    # NoBrokersAvailable, KafkaConnectionError, NodeNotReady ... and OS-level errors.
    return name in ("NoBrokersAvailable", "KafkaConnectionError", "NodeNotReadyError") or (
        isinstance(exc, OSError)
    )


def backend_error(
    what: str, exc: BaseException, secrets: Iterable[str | None] = ()
) -> BackendError:
    """The ``BackendError`` for a library error raised while doing ``what``."""
    message = redact(f"kafka {what} failed: {type(exc).__name__}: {exc}", secrets)
    return BackendError(message, backend="kafka", retryable=_retryable(exc))


@contextlib.contextmanager
def map_kafka_errors(what: str, secrets: Iterable[str | None] = ()) -> Iterator[None]:
    """Translate library (and socket/TLS) errors raised inside the block.

    ``BackendError`` raised inside passes through unchanged; anything that is neither a
    Kafka library error nor an ``OSError`` (a bug) is not touched either.

    >>> from kafka.errors import KafkaConnectionError
    >>> try:
    ...     with map_kafka_errors("poll"):
    ...         raise KafkaConnectionError()
    ... except BackendError as exc:
    ...     (exc.backend, exc.retryable, str(exc))
    ('kafka', True, 'kafka poll failed: KafkaConnectionError: KafkaConnectionError')
    """
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        if _is_library_error(exc) or isinstance(exc, OSError):
            raise backend_error(what, exc, secrets) from exc
        raise
