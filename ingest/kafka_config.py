"""Client configuration for both Kafka libraries, built once from ``KafkaSettings``.

Consumers, producers and the admin client of a backend get the same connection and
security options from here, so a setting cannot reach one client and miss another.
kafka-python takes keyword arguments; librdkafka (confluent-kafka) takes a dict of dotted
property names. The settings were validated (files exist and load, the protocol and its
credentials agree) when they were built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from causalwatch.settings import KafkaSettings
from ingest.kafka_errors import demote_close_cancellations, redact_library_logs

__all__ = ["kafka_python_config", "librdkafka_config", "secrets_of", "spread_partitions"]


def secrets_of(settings: KafkaSettings) -> list[str]:
    """The secret values of ``settings``, for :func:`ingest.kafka_errors.redact`.

    Every client calls this before it starts, which also keeps these secrets out of the
    libraries' logs (:func:`ingest.kafka_errors.redact_library_logs`).
    """
    out = []
    for secret in (settings.sasl_password, settings.ssl_key_password):
        if secret is not None and secret.get_secret_value():
            out.append(secret.get_secret_value())
    if out:
        redact_library_logs(out)
    return out


def kafka_python_config(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments common to ``KafkaConsumer``, ``KafkaProducer`` and the admin.

    Every kafka-python client is built from these, so this is also where its closing
    chatter is put at the right level (:func:`ingest.kafka_errors.demote_close_cancellations`).
    """
    demote_close_cancellations()
    s = settings
    cfg: dict[str, Any] = {
        "bootstrap_servers": s.bootstrap_servers.split(","),
        "client_id": s.client_id,
        "reconnect_backoff_ms": s.reconnect_backoff_ms,
        "reconnect_backoff_max_ms": s.reconnect_backoff_max_ms,
        "request_timeout_ms": s.request_timeout_ms,
        "security_protocol": s.security_protocol,
    }
    if s.security_protocol in ("SSL", "SASL_SSL"):
        cfg["ssl_check_hostname"] = s.ssl_check_hostname
        if s.ssl_cafile is not None:
            cfg["ssl_cafile"] = str(s.ssl_cafile)
        if s.ssl_certfile is not None:
            cfg["ssl_certfile"] = str(s.ssl_certfile)
        if s.ssl_keyfile is not None:
            cfg["ssl_keyfile"] = str(s.ssl_keyfile)
        if s.ssl_key_password is not None:
            cfg["ssl_password"] = s.ssl_key_password.get_secret_value()
    if s.security_protocol.startswith("SASL_"):
        assert s.sasl_password is not None  # checked by the settings
        cfg["sasl_mechanism"] = s.sasl_mechanism
        cfg["sasl_plain_username"] = s.sasl_username  # kafka-python: also SCRAM's
        cfg["sasl_plain_password"] = s.sasl_password.get_secret_value()
    return cfg


def librdkafka_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties common to the confluent-kafka consumer, producer and admin."""
    s = settings
    cfg: dict[str, Any] = {
        "bootstrap.servers": s.bootstrap_servers,
        "client.id": s.client_id,
        "reconnect.backoff.ms": s.reconnect_backoff_ms,
        "reconnect.backoff.max.ms": s.reconnect_backoff_max_ms,
        "socket.timeout.ms": s.request_timeout_ms,
        "security.protocol": s.security_protocol.lower(),
        # librdkafka logs through Python logging only with a logger; keep its stderr quiet
        "log.connection.close": False,
    }
    if s.security_protocol in ("SSL", "SASL_SSL"):
        cfg["ssl.endpoint.identification.algorithm"] = "https" if s.ssl_check_hostname else "none"
        if s.ssl_cafile is not None:
            cfg["ssl.ca.location"] = str(s.ssl_cafile)
        if s.ssl_certfile is not None:
            cfg["ssl.certificate.location"] = str(s.ssl_certfile)
        if s.ssl_keyfile is not None:
            cfg["ssl.key.location"] = str(s.ssl_keyfile)
        if s.ssl_key_password is not None:
            cfg["ssl.key.password"] = s.ssl_key_password.get_secret_value()
    if s.security_protocol.startswith("SASL_"):
        assert s.sasl_password is not None
        cfg["sasl.mechanism"] = s.sasl_mechanism
        cfg["sasl.username"] = s.sasl_username
        cfg["sasl.password"] = s.sasl_password.get_secret_value()
    return cfg


def spread_partitions(
    partitions: Sequence[int] | None, n_items: int, topic: str, count: Callable[[str], int]
) -> list[int | None]:
    """The partition each of ``n_items`` goes to: ``partitions[i]`` modulo the topic's
    partition count (``count(topic)``, asked only when needed), or ``None`` (the client's
    partitioner) for every item when no partitions are given or the count is unknown.

    Why explicit partitions for the internal topics: a series group ``g`` of
    ``kafka.internal_partitions`` must land in partition ``g`` so that detectors in one
    consumer group share the series evenly. Keyed by the group, the client's partitioner
    (murmur2 in kafka-python, CRC32 in librdkafka) hashes four group keys onto three
    partitions or fewer as often as not, and one detector then gets half the series or
    more (seen in `bench/scale.py`: a 3:1 split). The modulo keeps a topic created with
    fewer partitions than the setting working, each group still in one partition.

    >>> spread_partitions([0, 1, 2, 3], 4, "t", lambda t: 4)
    [0, 1, 2, 3]
    >>> spread_partitions([0, 1, 2, 3], 4, "t", lambda t: 3)
    [0, 1, 2, 0]
    >>> spread_partitions(None, 2, "t", lambda t: 4)
    [None, None]
    """
    if partitions is None:
        return [None] * n_items
    if len(partitions) != n_items:
        raise ValueError(f"{len(partitions)} partitions for {n_items} items")
    n = count(topic)
    if n <= 0:
        return [None] * n_items
    return [int(p) % n for p in partitions]
