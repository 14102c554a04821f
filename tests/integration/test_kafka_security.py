"""Kafka over TLS with client certificates, for real: tansu behind a TLS-terminating proxy
(socat, which demands a client certificate signed by the test CA), on both backends; and
secrets kept out of logs and error messages.

What cannot be tested here: SASL. tansu 0.6.0 refuses PLAIN (``NoSharedMechanism``) and,
with ``--authentication``, offers SCRAM only for users kept in its storage, which the
memory storage cannot be given before a client authenticates. The SASL settings are
checked for how they reach both libraries and for secrets, not against a broker.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from causalwatch.errors import BackendError, ConfigError
from causalwatch.settings import KafkaSettings, TopicSettings, load_settings
from ingest import ensure_topics
from ingest.kafka_backend import make_sink, make_source
from tests.integration.kafka_servers import KEY_PASSWORD, Certs, TlsBroker, tls_tools_available

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not tls_tools_available(), reason="socat/openssl missing (ci-install.sh)"),
]

BACKENDS = ["kafka-python", "confluent"]
SASL_PASSWORD = "sasl-pw-Zq81-never-logged"


@pytest.fixture
def certs(kafka_certs: Certs) -> Certs:
    return kafka_certs


def tls_settings(broker: TlsBroker, certs: Certs, uid: str, backend: str, **kw: Any):
    base: dict[str, Any] = {
        "backend": backend,
        "bootstrap_servers": broker.bootstrap,
        "group_id": f"g-{uid}",
        "client_id": f"c-{uid}",
        "topics": [TopicSettings(name=f"tls-{uid}", format="json")],
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "security_protocol": "SSL",
        "ssl_cafile": certs.ca,
        "ssl_certfile": certs.client_cert,
        "ssl_keyfile": certs.client_key,
        "ssl_key_password": KEY_PASSWORD,
        "request_timeout_ms": 5_000,
        "bootstrap_timeout_ms": 3_000,
    }
    base.update(kw)
    return KafkaSettings(**base)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tls_with_a_client_certificate_for_admin_producer_and_consumer(
    tls_broker: TlsBroker, certs: Certs, uid: str, backend: str
) -> None:
    settings = tls_settings(tls_broker, certs, uid, backend)
    topic = f"tls-{uid}"
    ensure_topics(settings, {topic: 2})  # the admin client
    sink = make_sink(settings)
    try:
        sink.write_batch(topic, [(None, b'{"n": %d}' % i, [("h", b"1")]) for i in range(20)])
    finally:
        sink.close()
    source = make_source(settings)
    try:
        got: list[Any] = []
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            got.extend(source.next_batch(100))
        source.commit({(r.topic, r.partition): r.offset + 1 for r in got})
        assert sum(source.lag().values()) == 0
    finally:
        source.close()
    assert sorted(r.value for r in got) == sorted(b'{"n": %d}' % i for i in range(20))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["no_client_certificate", "untrusted_server"])
def test_a_refused_tls_connection_is_a_backend_error_in_bounded_time(
    tls_broker: TlsBroker, certs: Certs, uid: str, backend: str, case: str
) -> None:
    if case == "no_client_certificate":
        settings = tls_settings(
            tls_broker,
            certs,
            uid,
            backend,
            ssl_certfile=None,
            ssl_keyfile=None,
            ssl_key_password=None,
        )
    else:
        settings = tls_settings(tls_broker, certs, uid, backend, ssl_cafile=certs.other_ca)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as info:
        ensure_topics(settings, {f"never-{uid}": 1})
    assert info.value.backend == "kafka"
    assert time.monotonic() - t0 < 60


def test_bad_tls_files_fail_at_start_up_naming_the_setting(certs: Certs, tmp_path: Path) -> None:
    kafka = {"security_protocol": "SSL", "ssl_cafile": str(tmp_path / "missing.pem")}
    with pytest.raises(ConfigError) as info:
        load_settings(kafka=kafka)
    assert info.value.setting == "kafka.ssl_cafile" and "missing.pem" in str(info.value)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"kafka\.ssl_cafile"):
        load_settings(kafka={"security_protocol": "SSL", "ssl_cafile": str(junk)})
    with pytest.raises(ConfigError, match=r"kafka\.ssl_key_password") as info:
        load_settings(
            kafka={
                "security_protocol": "SSL",
                "ssl_certfile": str(certs.client_cert),
                "ssl_keyfile": str(certs.client_key),
                "ssl_key_password": "wrong-password-41x",
            }
        )
    assert "wrong-password-41x" not in str(info.value)
    with pytest.raises(ConfigError, match=r"kafka\.ssl_keyfile"):
        load_settings(kafka={"security_protocol": "SSL", "ssl_certfile": str(certs.client_cert)})


@pytest.mark.parametrize("backend", BACKENDS)
def test_secrets_never_reach_logs_or_errors(
    tls_broker: TlsBroker, certs: Certs, uid: str, backend: str, caplog: Any
) -> None:
    # SASL over the TLS proxy: tansu has no SASL for this, so authentication fails; what
    # matters is where the password and the key password end up.
    caplog.set_level(logging.DEBUG)  # every logger, the libraries' included
    caplog.set_level(logging.DEBUG, logger="kafka")  # the CLI caps it at WARNING
    settings = tls_settings(
        tls_broker,
        certs,
        uid,
        backend,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SASL_PASSWORD,
    )
    texts = [repr(settings), str(settings.model_dump())]
    try:
        sink = make_sink(settings, flush_timeout_s=5.0)
        try:
            sink.write_batch(f"sasl-{uid}", [(None, b"{}", [])])
        finally:
            sink.close()
    except BackendError as exc:
        texts += [str(exc), repr(exc), repr(exc.__cause__), str(exc.__cause__)]
    with pytest.raises(ConfigError) as info:  # a wrong combination echoes no secret either
        load_settings(kafka={"sasl_password": SASL_PASSWORD, "sasl_username": "svc"})
    texts.append(str(info.value))
    with pytest.raises(ConfigError) as info:
        load_settings(kafka={"security_protocol": "SASL_SSL", "sasl_password": SASL_PASSWORD})
    texts.append(str(info.value))
    texts.append(caplog.text)
    for text in texts:
        assert SASL_PASSWORD not in text
        assert KEY_PASSWORD not in text
    assert caplog.records  # the libraries did log (at DEBUG) while failing
