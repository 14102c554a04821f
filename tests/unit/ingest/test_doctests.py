"""Run the ingest modules' doctests (pytest's --doctest-modules covers detector/explainer only)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["ingest.validate", "ingest.decode", "ingest.batch", "ingest.deadletter"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_exported_names() -> None:
    import ingest

    assert sorted(ingest.__all__) == sorted(set(ingest.__all__))
    for name in ingest.__all__:
        assert hasattr(ingest, name), name
