"""The API refuses to listen beyond loopback without a token unless told to, and the token
is a secret: never in repr, logs or error messages."""

from __future__ import annotations

import pytest

from causalwatch.errors import ConfigError
from causalwatch.settings import is_loopback, load_settings


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.com", ""])
def test_beyond_loopback_needs_a_token(host: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(api={"host": host})
    msg = str(err.value)
    assert "api.token" in msg and "CAUSALWATCH_API__TOKEN" in msg
    assert "api.allow_unauthenticated" in msg


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "localhost", "::1", "[::1]"])
def test_loopback_needs_none(host: str) -> None:
    assert load_settings(api={"host": host}).api.token is None
    assert is_loopback(host)


def test_token_or_explicit_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(api={"host": "0.0.0.0", "token": "s3cret-tok"})
    assert s.api.token is not None and s.api.token.get_secret_value() == "s3cret-tok"
    assert "s3cret-tok" not in repr(s) and "s3cret-tok" not in str(s.model_dump())
    assert load_settings(api={"host": "0.0.0.0", "allow_unauthenticated": True}).api.token is None
    monkeypatch.setenv("CAUSALWATCH_API__HOST", "0.0.0.0")
    with pytest.raises(ConfigError):
        load_settings()
    monkeypatch.setenv("CAUSALWATCH_API__ALLOW_UNAUTHENTICATED", "true")
    assert load_settings().api.allow_unauthenticated


def test_blank_token_and_small_body_cap_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"api\.token"):
        load_settings(api={"token": "  "})
    with pytest.raises(ConfigError, match=r"api\.max_body_bytes"):
        load_settings(api={"max_body_bytes": 10})
