"""Settings of the incident pages: ``api.external_url`` and ``explainer.trail_points``."""

from __future__ import annotations

import pytest

from causalwatch.errors import ConfigError
from causalwatch.settings import load_settings


def test_external_url_is_normalised() -> None:
    s = load_settings(api={"external_url": " https://cw.example.com/ops/ "})
    assert s.api.external_url == "https://cw.example.com/ops"
    assert load_settings().api.external_url is None


@pytest.mark.parametrize(
    "bad", ["cw.example.com", "ftp://cw.example.com", "https://", "https://x/?a=1", "http://x/#f"]
)
def test_bad_external_url_names_the_setting(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("CAUSALWATCH_API__EXTERNAL_URL", bad)
    with pytest.raises(ConfigError, match="CAUSALWATCH_API__EXTERNAL_URL"):
        load_settings()


def test_trail_points() -> None:
    assert load_settings().explainer.trail_points == 150
    assert load_settings(explainer={"trail_points": 0}).explainer.trail_points == 0
    for bad in (1, -1):
        with pytest.raises(ConfigError, match="trail_points"):
            load_settings(explainer={"trail_points": bad})
