"""A series against the detector's expected value and band, drawn as SVG by the service.

One plot per series of a snapshot: the reference window shaded grey, the anomaly window
shaded red, the band (lower..upper) as a pale area, the expected value dashed, the samples
as a solid line. Gaps (missing or non-finite values) break the lines instead of being
bridged. Times on the x axis are UTC ``HH:MM``; the y axis has three or four round ticks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["nice_ticks", "render_plot"]

W, H = 640, 190
LEFT, RIGHT, TOP, BOTTOM = 58, 10, 10, 24


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """Round tick values covering ``[lo, hi]``.

    >>> nice_ticks(0.0, 97.0)
    [0.0, 25.0, 50.0, 75.0, 100.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    out = []
    v = start
    while v < hi + step * 0.999:
        out.append(round(v, 10))
        v += step
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-2:
        return f"{v:.2g}"
    return f"{v:,.6g}" if a >= 100 else f"{v:.3g}"


def _segments(xs: Sequence[float], ys: Sequence[float | None]) -> list[list[tuple[float, float]]]:
    out: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] = []
    for x, y in zip(xs, ys, strict=False):
        if y is None or not math.isfinite(y):
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append((x, y))
    if cur:
        out.append(cur)
    return out


def _floats(v: Any) -> list[float | None]:
    return [None if x is None else float(x) for x in (v or [])]


def render_plot(
    series: Mapping[str, Any],
    *,
    reference: Sequence[float | None] | None,
    anomaly: Sequence[float | None] | None,
    title: str,
) -> str:
    """An ``<svg>`` of one snapshot series (``ts``, ``value``, ``expected``, ``lower``,
    ``upper`` lists); ``reference``/``anomaly`` are ``[start, end]`` unix seconds."""
    ts = [float(t) for t in series.get("ts") or [] if t is not None]
    value = _floats(series.get("value"))[: len(ts)]
    expected = _floats(series.get("expected"))[: len(ts)]
    lower = _floats(series.get("lower"))[: len(ts)]
    upper = _floats(series.get("upper"))[: len(ts)]
    head = (
        f'<svg class="plot" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        f'data-series="{escape(str(series.get("series", "")))}" data-points="{len(ts)}">'
        f"<title>{escape(title)}</title>"
    )
    if len(ts) < 2:
        return (
            head + f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="14" '
            'fill="#6b7280">no samples kept for this series</text></svg>'
        )
    t0, t1 = ts[0], ts[-1]
    for win in (reference, anomaly):
        if win and win[0] is not None:
            t0 = min(t0, max(float(win[0]), ts[0]))
    finite = [
        y
        for col in (value, lower, upper, expected)
        for y in col
        if y is not None and math.isfinite(y)
    ]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    margin = (hi - lo) * 0.06
    lo, hi = lo - margin, hi + margin
    ticks = nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(t: float) -> float:
        return LEFT + (t - t0) / max(t1 - t0, 1e-9) * pw

    def py(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * ph

    parts = [head]
    for win, fill, cls, label in (
        (reference, "#eef0f3", "win-reference", "reference window"),
        (anomaly, "#fecdd3", "win-anomaly", "anomaly window"),
    ):
        if not win or win[0] is None or win[1] is None:
            continue
        a, b = max(float(win[0]), t0), min(float(win[1]), t1)
        if b > a:
            parts.append(
                f'<rect class="{cls}" x="{px(a):.1f}" y="{TOP}" width="{px(b) - px(a):.1f}" '
                f'height="{ph}" fill="{fill}"><title>{label}</title></rect>'
            )
            if cls == "win-anomaly":  # a one-bin window is thin: mark its start
                parts.append(
                    f'<line x1="{px(a):.1f}" x2="{px(a):.1f}" y1="{TOP}" y2="{TOP + ph}" '
                    'stroke="#e11d48" stroke-width="1" stroke-dasharray="3 2"/>'
                )
    for v in ticks:
        y = py(v)
        parts.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#4b5563">{escape(_fmt(v))}</text>'
        )
    span = t1 - t0
    step = next(
        (s for s in (300, 600, 900, 1800, 3600, 7200, 21600, 86400) if span / s <= 6), 86400
    )
    t = math.ceil(t0 / step) * step
    while t <= t1:
        x = px(t)
        stamp = time.strftime("%H:%M", time.gmtime(t))
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + ph}" y2="{TOP + ph + 4}" '
            'stroke="#6b7280"/>'
            f'<text x="{x:.1f}" y="{H - 6}" text-anchor="middle" font-size="11" '
            f'fill="#4b5563">{stamp}</text>'
        )
        t += step
    xs = [px(t) for t in ts]
    # the band: upper edge forward, lower edge back, per stretch where both are known
    band_ok = [
        (x, u, lo_)
        for x, u, lo_ in zip(xs, upper, lower, strict=False)
        if u is not None and lo_ is not None and math.isfinite(u) and math.isfinite(lo_)
    ]
    if len(band_ok) >= 2:
        fwd = " ".join(f"{x:.1f},{py(u):.1f}" for x, u, _ in band_ok)
        back = " ".join(f"{x:.1f},{py(lo_):.1f}" for x, _, lo_ in reversed(band_ok))
        parts.append(
            f'<polygon class="band" points="{fwd} {back}" fill="#bfdbfe" fill-opacity="0.75">'
            "<title>expected band</title></polygon>"
        )
    for col, cls, stroke, extra in (
        (expected, "expected", "#1d4ed8", ' stroke-dasharray="5 3" stroke-width="1.4"'),
        (value, "value", "#111827", ' stroke-width="1.8"'),
    ):
        for seg in _segments(xs, [None if v is None else py(v) for v in col]):
            if len(seg) == 1:
                (x, y) = seg[0]
                parts.append(
                    f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="1.5" fill="{stroke}"/>'
                )
                continue
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            parts.append(
                f'<polyline class="{cls}" points="{pts}" fill="none" stroke="{stroke}"{extra}/>'
            )
    parts.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#9ca3af"/>'
    )
    parts.append("</svg>")
    return "".join(parts)
