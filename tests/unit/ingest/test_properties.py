"""Property tests: decoding arbitrary bytes never raises, and the two line parsers agree."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from causalwatch.errors import RecordError
from causalwatch.models import RawRecord
from ingest.decode import FORMATS, decode_batch
from ingest.decode.influx_line import _parse_line, _parse_line_escaped
from ingest.validate import REASONS, IngestLimits

NOW = 1_700_000_100.0
LIMITS = IngestLimits(max_message_bytes=4096, max_samples_per_message=50, max_labels=4)

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
_json_values = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
_sample_like = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(st.sampled_from(["up", "cpu_seconds", "1bad", ""]), _json_scalars),
        "labels": st.one_of(
            st.dictionaries(st.sampled_from(["a", "b-c", "__name__", "service"]), _json_scalars),
            _json_values,
        ),
        "timestamp": st.one_of(
            st.floats(NOW - 1e6, NOW + 1e6),
            st.sampled_from(["2023-11-14T22:13:20Z", "2023-11-14T22:13:20.5+01:00", "x"]),
            _json_scalars,
        ),
        "value": st.one_of(st.sampled_from(["1.5", "NaN", "+Inf", "x"]), _json_scalars),
    },
)


REPLAY = IngestLimits(max_future_s=float("inf"), max_age_s=float("inf"))


def _check(value: bytes, fmt: str, limits: IngestLimits = LIMITS) -> None:
    rec = RawRecord("t", 0, 0, value)
    batch, errors = decode_batch([rec], {"t": fmt}, limits, NOW)
    assert all(isinstance(e, RecordError) and e.reason in REASONS for e in errors)
    assert all(e.raw == value for e in errors)
    assert np.isfinite(batch.value).all() and np.isfinite(batch.ts).all()
    assert len(batch) <= limits.max_samples_per_message
    assert len(batch) > 0 or errors, "a record must yield samples or an error"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(sorted(FORMATS)))
def test_arbitrary_bytes_never_raise(value: bytes, fmt: str) -> None:
    _check(value, fmt)


@settings(max_examples=300, deadline=None)
@given(st.lists(_sample_like, max_size=6) | _sample_like, st.sampled_from(sorted(FORMATS)))
def test_json_shaped_input_never_raises(doc: object, fmt: str) -> None:
    _check(json.dumps(doc).encode(), fmt)
    _check(json.dumps(doc).encode(), fmt, REPLAY)  # replay: no time window at all


_lp_text = st.text(alphabet=st.sampled_from(list('ab1=, \\"#.\n\r-ituTf')), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_lp_text)
def test_line_protocol_like_text_never_raises(text: str) -> None:
    _check(text.encode(), "influx")


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab1=, .-i")), min_size=1, max_size=30))
def test_fast_line_parser_agrees_with_general_one(line: str) -> None:
    fast, general = _parse_line(line), _parse_line_escaped(line)
    if isinstance(fast, str) or isinstance(general, str):
        assert isinstance(fast, str) and isinstance(general, str), (line, fast, general)
    else:
        assert fast == general
