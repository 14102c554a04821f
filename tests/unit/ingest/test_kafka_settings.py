"""Kafka security settings: wrong combinations fail at start-up naming the setting, and both
client libraries get the same options for every client role."""

from __future__ import annotations

import logging

import pytest

from causalwatch.errors import ConfigError
from causalwatch.settings import KafkaSettings, load_settings
from ingest.kafka_config import kafka_python_config, librdkafka_config, secrets_of


@pytest.mark.parametrize(
    ("kafka", "names"),
    [
        ({"security_protocol": "SASL_SSL"}, ["kafka.sasl_mechanism", "kafka.sasl_password"]),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
            },
            ["kafka.sasl_password"],
        ),
        ({"sasl_username": "u"}, ["kafka.sasl_username", "PLAINTEXT"]),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "ssl_check_hostname": False,
                "ssl_cafile": "/etc/hostname",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
                "sasl_password": "p",
            },
            ["kafka.ssl_cafile", "TLS"],
        ),
        ({"security_protocol": "TLS"}, ["kafka.security_protocol"]),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, ["kafka.sasl_mechanism"]),
        ({"compression_type": "brotli"}, ["kafka.compression_type"]),
        (
            {"reconnect_backoff_ms": 5_000, "reconnect_backoff_max_ms": 1_000},
            ["kafka.reconnect_backoff_ms"],
        ),
    ],
)
def test_wrong_combinations_fail_naming_the_settings(kafka: dict, names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(kafka=kafka)
    for name in names:
        assert name in str(info.value)


def test_sasl_reaches_both_libraries_and_secrets_are_listed() -> None:
    s = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password="pw-1",  # type: ignore[arg-type]
        bootstrap_servers="a:9092,b:9092",
    )
    kp = kafka_python_config(s)
    assert kp["security_protocol"] == "SASL_PLAINTEXT" and kp["sasl_mechanism"] == "SCRAM-SHA-256"
    assert (kp["sasl_plain_username"], kp["sasl_plain_password"]) == ("svc", "pw-1")
    assert kp["bootstrap_servers"] == ["a:9092", "b:9092"]
    rd = librdkafka_config(s)
    assert rd["security.protocol"] == "sasl_plaintext" and rd["sasl.mechanism"] == "SCRAM-SHA-256"
    assert (rd["sasl.username"], rd["sasl.password"]) == ("svc", "pw-1")
    assert rd["reconnect.backoff.max.ms"] == kp["reconnect_backoff_max_ms"] == 1_000
    assert secrets_of(s) == ["pw-1"]
    assert "pw-1" not in repr(s)


def test_plaintext_passes_no_security_options() -> None:
    kp = kafka_python_config(KafkaSettings())
    assert not any(k.startswith(("ssl_", "sasl_")) for k in kp)
    rd = librdkafka_config(KafkaSettings())
    assert not any(k.startswith(("ssl.", "sasl.")) for k in rd)


def test_library_logs_never_show_a_configured_secret(caplog: pytest.LogCaptureFixture) -> None:
    # kafka-python logs each request at DEBUG; a SASL/PLAIN one carries the password.
    import kafka.net.connection  # noqa: F401  (creates the kafka.* loggers, as any client does)

    secrets_of(
        KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="PLAIN",
            sasl_username="svc",
            sasl_password="plain-pw-93",  # type: ignore[arg-type]
        )
    )
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="kafka")  # the CLI caps it at WARNING
    auth = b"\x00svc\x00plain-pw-93"
    logging.getLogger("kafka.net.connection").debug("Request %d: %s", 7, {"auth_bytes": auth})
    logging.getLogger("ingest.librdkafka").warning("sasl plain-pw-93 rejected")
    assert "plain-pw-93" not in caplog.text
    assert "Request 7" in caplog.text and "rejected" in caplog.text
