from __future__ import annotations

import numpy as np
import pytest

from causalwatch.errors import StateError
from causalwatch.store.checkpoint import SCHEMA_VERSION, Checkpoint, decode, encode


def test_round_trip_arrays_meta_offsets() -> None:
    cp = Checkpoint(
        arrays={"detector": {"mean": np.arange(5.0), "n": np.arange(5)}},
        meta={"stage": "all", "index": {"node_label": "service", "keys": ["a", None]}},
        offsets={("metrics", 0): 17, ("metrics", 3): 2},
    )
    back = decode(encode(cp))
    np.testing.assert_array_equal(back.arrays["detector"]["mean"], np.arange(5.0))
    assert back.arrays["detector"]["n"].dtype == np.int64
    assert back.meta == cp.meta
    assert back.offsets == cp.offsets
    assert back.schema_version == SCHEMA_VERSION


def test_version_mismatch_names_both_versions() -> None:
    blob = encode(Checkpoint(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(StateError) as exc:
        decode(blob)
    assert str(SCHEMA_VERSION + 1) in str(exc.value) and str(SCHEMA_VERSION) in str(exc.value)


def test_garbage_is_a_state_error() -> None:
    with pytest.raises(StateError, match="unreadable"):
        decode(b"not a checkpoint")
