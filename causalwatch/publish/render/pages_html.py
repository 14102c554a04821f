"""HTML of the pages: the incident list, one incident, the login form (pure functions).

Every value from a store goes through :func:`html.escape`; the only markup that is not
built here is the SVG from :mod:`~causalwatch.publish.render.graph_svg` and
:mod:`~causalwatch.publish.render.plot_svg`, which escape their own text. Explanation
fields another version may add or drop (``verdict``, ``unexplained``, percentage shares)
are read with defaults, so an older explanation still renders.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from causalwatch.publish.render.assets import CSS, SCRIPT
from causalwatch.publish.render.graph_svg import render_graph
from causalwatch.publish.render.plot_svg import render_plot

__all__ = [
    "Shares",
    "age_text",
    "incident_page",
    "incident_row",
    "layout",
    "list_page",
    "login_page",
    "message_page",
    "shares_of",
]

STATUSES = ("open", "closed", "false_positive")


def age_text(seconds: float) -> str:
    """``"42 s"``, ``"5 min"``, ``"3 h"``, ``"2 d"`` ago.

    >>> age_text(42), age_text(301), age_text(3 * 3600 + 5), age_text(2 * 86400)
    ('42 s ago', '5 min ago', '3 h ago', '2 d ago')
    """
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s ago"
    if s < 5400:
        return f"{s / 60:.0f} min ago"
    if s < 172800 - 1:
        return f"{s / 3600:.0f} h ago"
    return f"{s / 86400:.0f} d ago"


def _utc(ts: float | None) -> str:
    if ts is None or not math.isfinite(ts):
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _num(v: Any, fmt: str = ".3g") -> str:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return "–"
    return format(v, fmt)


def layout(
    title: str,
    content: str,
    nonce: str,
    *,
    body_attrs: Mapping[str, str] | None = None,
    logout: bool = False,
) -> str:
    attrs = "".join(f' {k}="{escape(v)}"' for k, v in (body_attrs or {}).items())
    out = (
        '<form method="post" action="/logout"><button class="secondary" type="submit">'
        "Log out</button></form>"
        if logout
        else ""
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · causalwatch</title>"
        f'<style nonce="{nonce}">{CSS}</style></head>'
        f'<body{attrs}><header class="top"><a href="/">causalwatch</a>'
        f'<span class="muted" id="live"></span>{out}</header>'
        f"<main>{content}</main>"
        f'<script nonce="{nonce}">{SCRIPT}</script></body></html>'
    )


def login_page(next_path: str, nonce: str, error: str | None = None) -> str:
    err = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    content = (
        '<div class="card login"><h1>Sign in</h1>'
        "<p class=muted>Enter the API token (<code>api.token</code>) of this service.</p>"
        f'{err}<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{escape(next_path)}">'
        '<label for="token">API token<input id="token" name="token" type="password" '
        'autocomplete="current-password" required autofocus></label>'
        '<button type="submit">Sign in</button></form></div>'
    )
    return layout("Sign in", content, nonce)


def message_page(title: str, text: str, nonce: str, *, logout: bool = False) -> str:
    content = f'<div class="card"><h1>{escape(title)}</h1><p>{escape(text)}</p>' + (
        '<p><a href="/">All incidents</a></p></div>'
    )
    return layout(title, content, nonce, logout=logout)


# --------------------------------------------------------------------------- shares
class Shares:
    """What each cause explains and the unexplained rest, in percent of the target's
    deviation, as the explanation gives them (or converted from fractions)."""

    def __init__(
        self,
        parts: list[tuple[str, float]],
        unexplained: float,
        note: str,
        opposing: list[tuple[str, float]] | None = None,
    ) -> None:
        self.parts = parts
        self.unexplained = unexplained
        self.note = note
        self.opposing = opposing or []


def _finite(v: Any) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else 0.0


def shares_of(exp: Mapping[str, Any]) -> Shares:
    """Shares as non-negative percentages with the unexplained rest.

    Explanations with an ``unexplained`` field carry non-negative shares that sum with it to
    1 (fractions; percentages are accepted too) and may list ``opposing`` nodes apart;
    older ones carry signed fractions, shown clipped at 0 with the rest computed here.

    >>> s = shares_of({"root_causes": [{"node": "db", "share": 0.6}, {"node": "x", "share": -0.1}]})
    >>> s.parts, s.unexplained
    ([('db', 60.0), ('x', 0.0)], 40.0)
    >>> s = shares_of({"root_causes": [{"node": "db", "share": 0.7}], "unexplained": 0.3,
    ...                "opposing": [{"node": "cache", "share": 0.1}]})
    >>> s.parts, s.unexplained, s.opposing
    ([('db', 70.0)], 30.0, [('cache', 10.0)])
    """
    rcs = [rc for rc in exp.get("root_causes") or [] if isinstance(rc, Mapping)]
    vals = [(str(rc.get("node")), _finite(rc.get("share"))) for rc in rcs]
    unexplained = exp.get("unexplained")
    if isinstance(unexplained, int | float) and not isinstance(unexplained, bool):
        rest = _finite(unexplained)
        scale = 100.0 if rest <= 1.0 and all(v <= 1.0 for _, v in vals) else 1.0
        opp = [
            (str(o.get("node")), max(0.0, _finite(o.get("share"))) * scale)
            for o in exp.get("opposing") or []
            if isinstance(o, Mapping)
        ]
        parts = [(n, max(0.0, v) * scale) for n, v in vals]
        return Shares(parts, max(0.0, rest * scale), "", opp)
    parts = [(n, max(0.0, v) * 100.0) for n, v in vals]
    total = sum(v for _, v in parts)
    note = ""
    if total > 100.0:
        parts = [(n, v * 100.0 / total) for n, v in parts]
        note = "shares added up to more than 100 %; scaled to 100 %"
    if any(v < 0 for _, v in vals):
        note = "negative shares (causes that pulled the other way) are shown as 0"
    return Shares(parts, max(0.0, 100.0 - sum(v for _, v in parts)), note)


def _shares_svg(sh: Shares) -> str:
    rows = [*sh.parts, ("unexplained", sh.unexplained)]
    bar_h, gap, label_w, w = 22, 8, 130, 400
    h = len(rows) * (bar_h + gap)
    parts = [
        f'<svg class="shares" viewBox="0 0 {w} {h}" role="img" aria-label="shares of the '
        'deviation by cause">'
    ]
    for i, (name, pct) in enumerate(rows):
        y = i * (bar_h + gap)
        bw = (w - label_w - 60) * min(max(pct, 0.0), 100.0) / 100.0
        fill = "#9ca3af" if name == "unexplained" else ("#c2185b" if i == 0 else "#f472b6")
        label = name if len(name) <= 20 else name[:19] + "…"
        parts.append(
            f'<g class="share" data-node="{escape(name)}" data-pct="{pct:.1f}">'
            f"<title>{escape(name)}: {pct:.0f} %</title>"
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" font-size="13" '
            f'fill="#111827">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w - label_w - 60}" height="{bar_h}" '
            f'fill="#f3f4f6"/><rect x="{label_w}" y="{y}" width="{bw:.1f}" height="{bar_h}" '
            f'fill="{fill}"/><text x="{w - 52}" y="{y + 16}" font-size="13" '
            f'fill="#111827">{pct:.0f} %</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- the list
def incident_row(inc: Mapping[str, Any], now: float) -> str:
    """One ``<tr>`` of the list (also sent over server-sent events)."""
    iid = str(inc.get("incident_id", ""))
    targets = [t for t in (inc.get("targets") or {}).values() if isinstance(t, Mapping)]
    top = max(targets, key=lambda t: float(t.get("severity") or 0.0), default={})
    severity = float(top.get("severity") or 0.0) if top else 0.0
    cause = top.get("top_root_cause") if top else None
    share = inc.get("_top_share")
    verdict = inc.get("_verdict")
    status = str(inc.get("status", "open"))
    updated = float(inc.get("updated_at") or 0.0)
    share_txt = f" ({share:.0f} %)" if isinstance(share, int | float) else ""
    return (
        f'<tr id="inc-{escape(iid)}" data-status="{escape(status)}">'
        f'<td class="nowrap"><a href="/incidents/{quote(iid)}">{escape(iid)}</a></td>'
        f"<td>{escape(', '.join(str(n) for n in inc.get('nodes') or []))}</td>"
        f'<td class="num">{severity:.0f}</td>'
        f"<td>{escape(_verdict_label(verdict)) if verdict is not None else '–'}</td>"
        f'<td><span class="cause">{escape(str(cause)) if cause else "–"}</span>{share_txt}</td>'
        f'<td><span class="badge {escape(status)}">{escape(status)}</span></td>'
        f'<td class="nowrap"><time datetime="{escape(_utc(updated))}" '
        f'title="{escape(_utc(updated))}">'
        f"{escape(age_text(now - updated))}</time></td></tr>"
    )


def list_page(
    rows: Sequence[str],
    *,
    nodes: Sequence[str],
    node: str | None,
    status: str | None,
    nonce: str,
    logout: bool,
) -> str:
    opts = "".join(f'<option value="{escape(n)}"></option>' for n in nodes)
    status_opts = '<option value="">any</option>' + "".join(
        f'<option value="{s}"{" selected" if s == status else ""}>{s}</option>' for s in STATUSES
    )
    body = "".join(rows) or (
        '<tr id="no-incidents"><td colspan="7" class="muted">No incidents match.</td></tr>'
    )
    q = urlencode({k: v for k, v in (("node", node), ("status", status)) if v})
    content = (
        "<h1>Incidents</h1>"
        '<form class="filters card" method="get" action="/" role="search">'
        f'<label for="f-node">Node<input id="f-node" name="node" list="nodes" '
        f'value="{escape(node or "")}" placeholder="any"></label>'
        f'<datalist id="nodes">{opts}</datalist>'
        f'<label for="f-status">Status<select id="f-status" name="status">{status_opts}'
        "</select></label>"
        '<button type="submit">Filter</button>'
        '<a href="/">Clear</a></form>'
        '<div class="card scroll"><table><caption class="muted">Open and recent incidents, '
        "newest first; new ones appear as they are explained.</caption><thead><tr>"
        "<th>Incident</th><th>Nodes</th><th>Severity</th><th>Verdict</th>"
        "<th>Top root cause (share)</th><th>Status</th><th>Updated</th></tr></thead>"
        f'<tbody id="incident-rows">{body}</tbody></table></div>'
    )
    return layout(
        "Incidents",
        content,
        nonce,
        body_attrs={"data-events": "/events" + (f"?{q}" if q else "")},
        logout=logout,
    )


# --------------------------------------------------------------------------- one incident
def _swatch(shape: str) -> str:
    return (
        '<span><svg class="swatch" width="28" height="12" viewBox="0 0 28 12" '
        f'aria-hidden="true">{shape}</svg>'
    )


def _mute_text(matchers: Mapping[str, str], until: float) -> str:
    """``service=db until 2026-12-01 15:16:40 UTC``."""
    what = ", ".join(f"{k}={v}" for k, v in sorted(matchers.items()))
    return f"{what} until {_utc(until)}"


def _verdict_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        for k in ("label", "kind", "verdict", "text", "summary"):
            if isinstance(v.get(k), str):
                return str(v[k])
        return ", ".join(f"{k}: {val}" for k, val in v.items())
    return str(v)


_VERDICT_LABELS = {"root_cause": "Root cause found", "inconclusive": "Inconclusive"}


def _verdict_label(v: Any) -> str:
    text = _verdict_text(v)
    return _VERDICT_LABELS.get(text, text)


def _verdict_html(exp: Mapping[str, Any]) -> str:
    v = exp.get("verdict")
    if v is None:
        return '<p class="verdict muted">No verdict in this explanation.</p>'
    detail = ""
    if isinstance(v, Mapping):
        items = "".join(
            f"<li>{escape(str(k))}: {escape(str(val))}</li>"
            for k, val in v.items()
            if not isinstance(val, Mapping | list)
        )
        detail = f'<ul class="muted">{items}</ul>' if items else ""
    text = _verdict_text(v)
    label = _VERDICT_LABELS.get(text, text)
    reason = exp.get("verdict_reason")
    if isinstance(reason, str) and reason:
        detail += f'<p class="muted" id="verdict-reason">{escape(reason)}</p>'
    method = exp.get("method")
    if isinstance(method, str) and method:
        detail += f'<p class="muted">ranking method: <code>{escape(method)}</code></p>'
    return (
        f'<p class="verdict" id="verdict" data-verdict="{escape(text)}"><strong>'
        f"{escape(label)}</strong></p>{detail}"
    )


def _evidence_rows(exp: Mapping[str, Any], sh: Shares) -> str:
    pct = dict(sh.parts)
    out = []
    for i, rc in enumerate(exp.get("root_causes") or []):
        if not isinstance(rc, Mapping):
            continue
        ev = rc.get("evidence") if isinstance(rc.get("evidence"), Mapping) else {}
        assert isinstance(ev, Mapping)
        m = ev.get("mechanism_change") if isinstance(ev.get("mechanism_change"), Mapping) else {}
        assert isinstance(m, Mapping)
        g = ev.get("granger") if isinstance(ev.get("granger"), Mapping) else None
        if g is not None:
            assert isinstance(g, Mapping)
            what = "pair" if g.get("pair") else ("edge" if g.get("edge") else "")
            granger = (
                f"p {_num(g.get('p_value'))}, q {_num(g.get('q_value'))}, "
                f"lag {escape(str(g.get('lag')))}" + (f" ({what})" if what else "")
            )
        else:
            granger = "–"
        ci = ev.get("ci") if isinstance(ev.get("ci"), list) else [None, None]
        assert isinstance(ci, list)
        path = ev.get("path") if isinstance(ev.get("path"), list) else []
        assert isinstance(path, list)
        pts = ev.get("points") if isinstance(ev.get("points"), Mapping) else {}
        assert isinstance(pts, Mapping)
        node = str(rc.get("node"))
        out.append(
            f'<tr id="ev-{i}" data-node="{escape(node)}"><td class="num">{i + 1}</td>'
            f'<td><span class="{"cause" if i == 0 else ""}">{escape(node)}</span><br>'
            f"<code>{escape(str(rc.get('series') or ''))}</code></td>"
            f'<td class="num">{_num(rc.get("score"), ".2f")}</td>'
            f'<td class="num">{pct.get(node, 0.0):.0f} %</td>'
            f'<td class="num">{_num(m.get("score"), ".2f")}</td>'
            f'<td class="num">{_num(m.get("p_value"))}</td>'
            f'<td class="num">{_num(m.get("z"), ".2f")}</td>'
            f"<td>{granger}</td>"
            f'<td class="num">[{_num(ci[0] if ci else None, ".2f")}, '
            f"{_num(ci[1] if len(ci) > 1 else None, '.2f')}]</td>"
            f"<td>{escape(' → '.join(str(p) for p in path))}</td>"
            f'<td class="num">{escape(str(pts.get("reference", "–")))} / '
            f"{escape(str(pts.get('anomaly', '–')))}</td></tr>"
        )
    return "".join(out)


_DURATIONS = ((900, "15 minutes"), (3600, "1 hour"), (4 * 3600, "4 hours"), (86400, "1 day"))


def _feedback_html(
    inc: Mapping[str, Any], exp: Mapping[str, Any], node_label: str, mutes: Sequence[Any]
) -> str:
    status = str(inc.get("status", "open"))
    target = exp.get("target") if isinstance(exp.get("target"), Mapping) else {}
    assert isinstance(target, Mapping)
    choices: list[tuple[str, dict[str, Any]]] = []
    if target.get("series"):
        choices.append((f"series {target['series']}", {"series": target["series"]}))
    seen = set()
    for n in [target.get("node"), *[rc.get("node") for rc in exp.get("root_causes") or []]]:
        if n and n not in seen:
            seen.add(n)
            choices.append((f"node {n} (all its series)", {"matchers": {node_label: n}}))
    opts = "".join(
        f"<option value='{escape(json.dumps(v))}'>{escape(label)}</option>" for label, v in choices
    )
    dur = "".join(
        f'<option value="{s}"{" selected" if s == 3600 else ""}>{label}</option>'
        for s, label in _DURATIONS
    )
    items = (
        "".join(
            f"<li>{escape(json.dumps(m.matchers))} until {escape(_utc(m.until))}</li>"
            for m in mutes
        )
        or '<li id="no-mutes" class="muted">none</li>'
    )
    return (
        '<div class="card" id="feedback"><h2>Feedback</h2><div class="actions">'
        f'<button type="button" id="mark-fp"{" disabled" if status == "false_positive" else ""}>'
        "Mark false positive</button></div>"
        '<form id="mute-form" class="actions" action="#">'
        f'<label for="mute-what">Mute<select id="mute-what" name="what">{opts}</select></label>'
        f'<label for="mute-duration">for<select id="mute-duration" name="duration">{dur}'
        "</select></label>"
        '<button type="submit" id="mute-btn" class="secondary">Mute</button></form>'
        '<div id="result" role="status" aria-live="polite"></div>'
        f'<h2>Active mutes here</h2><ul id="mutes">{items}</ul></div>'
    )


def incident_page(
    *,
    inc: Mapping[str, Any],
    exp: Mapping[str, Any] | None,
    snapshot: Mapping[str, Any] | None,
    selected: str | None,
    node_label: str,
    mutes: Sequence[Any],
    nonce: str,
    logout: bool,
) -> str:
    iid = str(inc.get("incident_id", ""))
    status = str(inc.get("status", "open"))
    targets = inc.get("targets") or {}
    nav = "".join(
        f'<a href="/incidents/{quote(iid)}?{urlencode({"target": key})}"'
        f"{' aria-current=' + chr(34) + 'page' + chr(34) if key == selected else ''}>"
        f'<span title="{escape(key)}">{escape(str(t.get("node")))} · '
        f"{escape(key.split('{', 1)[0] or key)}</span> · {float(t.get('severity') or 0):.0f}</a>"
        for key, t in targets.items()
        if isinstance(t, Mapping)
    )
    head = (
        f'<h1>Incident <code>{escape(iid)}</code> <span id="status" class="badge '
        f'{escape(status)}">{escape(status)}</span></h1>'
        f'<p class="muted">nodes {escape(", ".join(map(str, inc.get("nodes") or [])))} · '
        f"opened {escape(_utc(inc.get('opened_at')))} · updated "
        f"{escape(_utc(inc.get('updated_at')))}</p>"
        f'<nav class="targets" aria-label="targets of this incident">{nav}</nav>'
    )
    attrs = {
        "data-fp-url": f"/api/v1/incidents/{quote(iid)}/false-positive",
        "data-mute-url": "/api/v1/mutes",
    }
    if exp is None:
        content = head + '<div class="card"><p>No explanation is stored for this target.</p></div>'
        return layout(f"Incident {iid}", content, nonce, body_attrs=attrs, logout=logout)
    target = exp.get("target") if isinstance(exp.get("target"), Mapping) else {}
    assert isinstance(target, Mapping)
    rcs = [rc for rc in exp.get("root_causes") or [] if isinstance(rc, Mapping)]
    top = rcs[0] if rcs else None
    path: list[str] = []
    if top is not None:
        ev = top.get("evidence") if isinstance(top.get("evidence"), Mapping) else {}
        assert isinstance(ev, Mapping)
        p = ev.get("path")
        path = [str(n) for n in p] if isinstance(p, list) and p else [str(top.get("node"))]
        if path[-1] != target.get("node"):
            path.append(str(target.get("node")))
    sh = shares_of(exp)
    summary = (
        f"<p>Anomaly on <strong>{escape(str(target.get('node')))}</strong> "
        f"(<code>{escape(str(target.get('series')))}</code>), severity "
        f"{_num(exp.get('severity'), '.0f')}/100, window "
        f"{escape(_utc((exp.get('window') or {}).get('start')))} – "
        f"{escape(_utc((exp.get('window') or {}).get('end')))}.</p>"
    )
    if top is not None:
        summary += (
            f'<p id="root-cause">Most likely root cause: <span class="cause">'
            f"{escape(str(top.get('node')))}</span> (score {_num(top.get('score'), '.2f')})"
            + (f", via {escape(' → '.join(path))}" if len(path) > 1 else "")
            + ".</p>"
        )
    else:
        summary += '<p id="root-cause">No root cause was ranked.</p>'
    snap_graph = (snapshot or {}).get("graph") or {
        "nodes": [{"node": str(target.get("node")), "severity": exp.get("severity") or 0}],
        "edges": [],
    }
    graph_svg = render_graph(
        snap_graph,
        target=str(target.get("node")),
        path=path,
        candidates=[str(rc.get("node")) for rc in rcs],
    )
    legend = (
        '<div class="legend">'
        + _swatch('<line x1="0" y1="6" x2="28" y2="6" stroke="#6b7280" stroke-width="2"/>')
        + "given edge</span>"
        + _swatch(
            '<line x1="0" y1="6" x2="28" y2="6" stroke="#6b7280" stroke-width="2" '
            'stroke-dasharray="5 3"/>'
        )
        + "learned edge</span>"
        + _swatch('<line x1="0" y1="6" x2="28" y2="6" stroke="#c2185b" stroke-width="4"/>')
        + "root-cause path</span>"
        + '<span><i class="sw hot"></i>anomaly severity 0 → 100</span></div>'
    )
    graph_note = (
        ""
        if snapshot
        else '<p class="muted">No snapshot was stored with this explanation (written by an '
        "older version, expired, or the trail is off): the graph shows the target only.</p>"
    )
    plots = []
    for s in (snapshot or {}).get("series") or []:
        if not isinstance(s, Mapping):
            continue
        role = "target" if s.get("role") == "target" else "candidate"
        title = f"{s.get('node')} ({role}): {s.get('series')}"
        plots.append(
            f'<figure class="card" data-role="{role}"><figcaption><strong>'
            f"{escape(str(s.get('node')))}</strong> <span class=muted>{role}</span><br>"
            f"<code>{escape(str(s.get('series')))}</code></figcaption>"
            + render_plot(
                s,
                reference=(snapshot or {}).get("reference"),
                anomaly=(snapshot or {}).get("anomaly"),
                title=title,
            )
            + "</figure>"
        )
    plots_html = (
        '<div class="plots">' + "".join(plots) + "</div>"
        if plots
        else '<p class="muted">No series history was kept for this explanation.</p>'
    )
    plot_legend = (
        '<div class="legend">'
        + _swatch('<line x1="0" y1="6" x2="28" y2="6" stroke="#111827" stroke-width="2"/>')
        + "value</span>"
        + _swatch(
            '<line x1="0" y1="6" x2="28" y2="6" stroke="#1d4ed8" stroke-width="1.6" '
            'stroke-dasharray="5 3"/>'
        )
        + "expected</span>"
        + '<span><i class="sw band"></i>band</span>'
        + '<span><i class="sw ref"></i>reference window</span>'
        + '<span><i class="sw anom"></i>anomaly window</span></div>'
    )
    note = f'<p class="muted">{escape(sh.note)}</p>' if sh.note else ""
    if sh.opposing:
        pulled = ", ".join(f"{escape(n)} ({v:.0f} %)" for n, v in sh.opposing)
        note += f'<p class="muted" id="opposing">Pulled the other way: {pulled}.</p>'
    content = (
        head
        + '<section class="card" aria-labelledby="h-graph"><h2 id="h-graph">Dependency graph'
        + '</h2><div class="scroll" tabindex="0" aria-label="graph, scrolls sideways">'
        + graph_svg
        + "</div>"
        + legend
        + graph_note
        + '</section><div class="grid"><section class="card" aria-labelledby="h-verdict">'
        + '<h2 id="h-verdict">Verdict</h2>'
        + _verdict_html(exp)
        + summary
        + '</section><section class="card" aria-labelledby="h-shares">'
        + '<h2 id="h-shares">What explains the deviation</h2>'
        + _shares_svg(sh)
        + note
        + "</section>"
        + _feedback_html(inc, exp, node_label, mutes)
        + '</div><section aria-labelledby="h-series"><h2 id="h-series">Series against '
        + "the expected value and band</h2>"
        + plot_legend
        + plots_html
        + '</section><section class="card scroll" aria-labelledby="h-ev">'
        + '<h2 id="h-ev">Evidence per candidate</h2><table><thead><tr><th>#</th>'
        + "<th>Node / series</th><th>Score</th><th>Share</th><th>Mechanism change</th>"
        + "<th>p-value</th><th>z</th><th>Granger</th><th>Share 95 % interval</th>"
        + "<th>Path</th><th>Points ref / anom</th></tr></thead><tbody>"
        + _evidence_rows(exp, sh)
        + "</tbody></table></section>"
    )
    return layout(f"Incident {iid}", content, nonce, body_attrs=attrs, logout=logout)
