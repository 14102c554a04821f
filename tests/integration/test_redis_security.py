"""Redis over TLS with a password and an ACL user, for real: Debian's redis-server 7 (built
with TLS) started with ``--tls-port`` only, client certificates required, ``requirepass``
for the default user and an ACL user limited to the service's key prefix. The clients are
built by :func:`causalwatch.store.client.connect` from the ``redis`` settings, the way the
service builds them; secrets never appear in logs, errors or reprs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from causalwatch.errors import BackendError, ConfigError
from causalwatch.settings import load_settings
from causalwatch.store.client import connect, ping
from causalwatch.store.feedback import FeedbackStore
from causalwatch.tooling.embedded import _terminate, _wait_port, free_port
from tests.integration.kafka_servers import KEY_PASSWORD, Certs

pytestmark = pytest.mark.integration

SYSTEM_REDIS = "/usr/bin/redis-server"
ADMIN_PASSWORD = "adm1n-pw-5c2d9e"
APP_PASSWORD = "app-pw-91f3aa7"
SECRETS = (ADMIN_PASSWORD, APP_PASSWORD, KEY_PASSWORD)


def _tls_redis_binary() -> str:
    for candidate in (SYSTEM_REDIS, shutil.which("redis-server")):
        if candidate and Path(candidate).is_file():
            probe = subprocess.run(
                [candidate, "--version"], capture_output=True, text=True, timeout=10
            )
            if "v=6" in probe.stdout or "v=7" in probe.stdout:
                return candidate
    pytest.skip("no redis-server 6+ with TLS (apt-get install redis-server)")


@dataclass
class TlsRedis:
    port: int
    proc: subprocess.Popen[bytes]
    certs: Certs

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture(scope="module")
def tls_redis(kafka_certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    binary = _tls_redis_binary()
    port = free_port()
    folder = tmp_path_factory.mktemp("redis-tls")
    conf = folder / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0",
                f"tls-port {port}",
                "bind 127.0.0.1",
                f"tls-cert-file {kafka_certs.server_cert}",
                f"tls-key-file {kafka_certs.server_key}",
                f"tls-ca-cert-file {kafka_certs.ca}",
                "tls-auth-clients yes",
                f"requirepass {ADMIN_PASSWORD}",
                f"user app on >{APP_PASSWORD} ~cwsec:* &* +@all",
                'save ""',
                "appendonly no",
                f"dir {folder}",
            ]
        )
        + "\n"
    )
    proc = subprocess.Popen([binary, str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc, "redis (tls)", 15)
    except Exception:
        _terminate(proc)
        err = proc.stdout.read().decode() if proc.stdout else ""
        if "tls" in err.lower():
            pytest.skip(f"{binary} was built without TLS: {err[:200]}")
        raise
    yield TlsRedis(port, proc, kafka_certs)
    _terminate(proc)


def _settings(r: TlsRedis, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "url": r.url,
        "prefix": "cwsec:",
        "tls": True,
        "username": "app",
        "password": APP_PASSWORD,
        "ssl_ca_certs": str(r.certs.ca),
        "ssl_certfile": str(r.certs.client_cert),
        "ssl_keyfile": str(r.certs.client_key),
        "ssl_key_password": KEY_PASSWORD,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"secret leaked: {text[:300]}"


def test_acl_user_over_tls_with_a_client_certificate(
    tls_redis: TlsRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = load_settings(redis=_settings(tls_redis))
    client = connect(s.redis)
    ping(client, s.redis.url)
    assert client.acl_whoami() in ("app", b"app")
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    # the stores work through it: a mute written and read back under the allowed prefix
    fb = FeedbackStore(client, prefix=s.redis.prefix)
    m = fb.mute({"service": "api"}, until=2e9, now=1.7e9)
    assert [x.id for x in fb.list_mutes(now=1.7e9)] == [m.id]
    # the ACL user is confined to its prefix: a key outside is refused, as BackendError
    outside = FeedbackStore(client, prefix="other:")
    with pytest.raises(BackendError) as err:
        outside.mute({"service": "api"}, until=2e9, now=1.7e9)
    assert err.value.retryable is False and "no permissions" in str(err.value)
    client.close()
    _assert_no_secret(caplog.text, repr(s), str(s.model_dump()), s.model_dump_json())


@pytest.mark.parametrize(
    ("over", "expect"),
    [
        ({"password": "wrong-pw-0000"}, "invalid username-password"),
        ({"username": None, "password": APP_PASSWORD}, "invalid"),  # default user's is other
        ({"username": None, "password": None}, "auth"),  # NOAUTH / Authentication required
        ({"ssl_ca_certs": None}, "certificate verify failed"),  # system CAs: not ours
        ({"ssl_certfile": None, "ssl_keyfile": None, "ssl_key_password": None}, ""),
    ],
    ids=["wrong-password", "default-user", "no-credentials", "unknown-ca", "no-client-cert"],
)
def test_refusals_are_backend_errors_without_secrets(
    tls_redis: TlsRedis, over: dict[str, object], expect: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = load_settings(redis=_settings(tls_redis, **over))
    client = connect(s.redis)
    with pytest.raises(BackendError) as err:
        ping(client, s.redis.url)
    msg = str(err.value)
    assert "redis.url" in msg and "CAUSALWATCH_REDIS__URL" in msg
    assert expect.lower() in msg.lower(), msg
    chain = "".join(traceback.format_exception(err.value))
    _assert_no_secret(msg, chain, caplog.text)
    client.close()


def test_plaintext_against_the_tls_port_fails(tls_redis: TlsRedis) -> None:
    s = load_settings(redis={"url": tls_redis.url, "password": APP_PASSWORD, "username": "app"})
    client = connect(s.redis)
    with pytest.raises(BackendError) as err:
        ping(client, s.redis.url)
    assert err.value.retryable  # a connection error: the server hung up
    _assert_no_secret(str(err.value), "".join(traceback.format_exception(err.value)))


def test_bad_tls_settings_fail_at_start_up_by_name(tls_redis: TlsRedis, tmp_path: Path) -> None:
    c = tls_redis.certs
    cases = [
        ({"ssl_key_password": "nope"}, "redis.ssl_key_password"),
        ({"ssl_ca_certs": str(tmp_path / "missing.pem")}, "redis.ssl_ca_certs"),
        ({"ssl_keyfile": None, "ssl_key_password": None}, "redis.ssl_keyfile go together"),
        ({"tls": False, "url": tls_redis.url}, "redis.tls is false"),
        ({"ssl_certfile": str(c.ca), "ssl_keyfile": str(c.server_key),
          "ssl_key_password": None}, "redis.ssl_certfile"),
        ({"password": None}, "redis.username set without redis.password"),
        ({"url": f"redis://app:{APP_PASSWORD}@127.0.0.1:1/0"}, "redis.password"),
    ]  # fmt: skip
    for over, expect in cases:
        with pytest.raises(ConfigError) as err:
            load_settings(redis=_settings(tls_redis, **over))
        assert expect in str(err.value), (over, str(err.value))
        _assert_no_secret(str(err.value), "".join(traceback.format_exception(err.value)))


def test_the_cli_connects_with_the_settings_from_the_environment(tls_redis: TlsRedis) -> None:
    """``causalwatch graph show`` in a subprocess, configured only through CAUSALWATCH_REDIS__*
    variables, reaches the TLS Redis as the ACL user; a wrong password fails without it."""
    parent = os.environ  # noqa: TID251 - builds a child's environment
    env = {k: v for k, v in parent.items() if not k.startswith("CAUSALWATCH_")}
    for key, value in _settings(tls_redis).items():
        env[f"CAUSALWATCH_REDIS__{key.upper()}"] = (
            str(value).lower() if value is True else str(value)
        )
    cmd = [sys.executable, "-m", "causalwatch.app.cli", "graph", "show"]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert '"edges"' in ok.stdout
    env["CAUSALWATCH_REDIS__PASSWORD"] = "wrong-" + APP_PASSWORD[::-1]
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    _assert_no_secret(bad.stdout, bad.stderr, ok.stdout, ok.stderr)
    assert APP_PASSWORD[::-1] not in bad.stderr + bad.stdout
