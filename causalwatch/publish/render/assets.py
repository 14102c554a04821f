"""The pages' one stylesheet and one small script, inlined with a per-response nonce.

Nothing is fetched from anywhere: the service works without internet, and the strict
Content-Security-Policy (``default-src 'none'``) lets only these two nonce-tagged blocks run.
The script does three things: follow the server-sent events of the incident list (rows
come rendered by the server), send the feedback buttons' requests to the JSON API, and
show their outcome in a live region.
"""

from __future__ import annotations

__all__ = ["CSS", "SCRIPT"]

CSS = """
:root { --fg:#111827; --muted:#4b5563; --line:#d1d5db; --accent:#c2185b; --bg:#f9fafb;
  --ok:#166534; --bad:#991b1b; font-family: system-ui, -apple-system, "Segoe UI", Roboto,
  "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
* { box-sizing: border-box; }
body { margin: 0; font-size: 15px; line-height: 1.4; }
header.top { display:flex; align-items:center; gap:1rem; padding:.5rem 1rem;
  background:#1f2937; color:#fff; flex-wrap:wrap; }
header.top a { color:#fff; text-decoration:none; font-weight:700; }
header.top form { margin-left:auto; }
main { padding: .75rem 1rem 2rem; max-width: 1400px; margin: 0 auto; }
h1 { font-size: 1.3rem; margin: .3rem 0 .6rem; word-break: break-word; }
h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
a { color: #1d4ed8; }
a:focus-visible, button:focus-visible, select:focus-visible, input:focus-visible,
summary:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:.75rem;
  margin-bottom: .75rem; min-width: 0; }
.grid { display:grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap:.75rem; }
.plots { display:grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap:.75rem; }
@media (max-width: 900px) { .grid, .plots { grid-template-columns: minmax(0, 1fr); } }
svg { width: 100%; height: auto; display:block; }
svg.swatch { display:inline-block; width:28px; height:12px; vertical-align:middle;
  margin-right:.3rem; }
#live { color:#86efac; font-size:.85rem; }
/* the graph keeps its drawn size (readable labels) and scrolls sideways when wider */
svg.graph { width: auto; max-width: none; }
figure { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display:inline-block; padding:.05rem .5rem; border-radius:999px; font-size:.85rem;
  border:1px solid var(--line); background:#f3f4f6; white-space:nowrap; }
.badge.open { background:#fee2e2; border-color:#fca5a5; color:var(--bad); }
.badge.false_positive { background:#e0e7ff; border-color:#a5b4fc; color:#3730a3; }
.badge.closed { background:#dcfce7; border-color:#86efac; color:var(--ok); }
.cause { font-weight: 700; color: var(--accent); }
.muted { color: var(--muted); font-size: .9rem; }
.verdict { font-size: 1.05rem; }
form.filters, .actions { display:flex; gap:.5rem; flex-wrap:wrap; align-items:end; }
label { display:flex; flex-direction:column; font-size:.85rem; color:var(--muted); gap:.15rem; }
input, select, button { font: inherit; padding: .35rem .6rem; border-radius: 6px;
  border: 1px solid #9ca3af; background: #fff; color: var(--fg); min-height: 2.2rem; }
button { cursor: pointer; background: #1f2937; color: #fff; border-color: #1f2937; }
button.secondary { background:#fff; color:var(--fg); border-color:#9ca3af; }
button[disabled] { opacity: .6; cursor: default; }
#result { min-height: 1.5rem; margin-top: .5rem; }
#result.ok { color: var(--ok); } #result.bad { color: var(--bad); }
.legend { display:flex; gap:1rem; flex-wrap:wrap; font-size:.85rem; color:var(--muted);
  margin-top:.4rem; }
.sw { display:inline-block; width:1.6rem; height:.7rem; vertical-align:middle;
  margin-right:.3rem; border-radius:2px; }
.sw.ref { background:#eef0f3; } .sw.anom { background:#fecdd3; } .sw.band { background:#bfdbfe; }
.sw.hot { background: linear-gradient(90deg,#e4ede6,#f6c343,#d7303b); }
nav.targets { display:flex; gap:.4rem; flex-wrap:wrap; margin-bottom:.6rem; }
nav.targets a { padding:.2rem .6rem; border:1px solid var(--line); border-radius:6px;
  text-decoration:none; background:#fff; }
nav.targets a[aria-current="page"] { border-color:var(--accent); font-weight:700; }
.login { max-width: 360px; margin: 4rem auto; }
.login form { display:flex; flex-direction:column; gap:.6rem; }
.error { color: var(--bad); }
tr.new { animation: flash 2s ease-out; }
@keyframes flash { from { background:#fef3c7; } to { background:transparent; } }
code { font-size: .85em; word-break: break-all; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var body = document.body;
  var HDR = {"Content-Type": "application/json", "X-Causalwatch-Page": "1"};
  function say(text, ok) {
    var r = document.getElementById("result");
    if (!r) return;
    r.textContent = text;
    r.className = ok ? "ok" : "bad";
  }
  function send(method, url, payload) {
    return fetch(url, {method: method, headers: HDR, credentials: "same-origin",
                       body: payload === undefined ? undefined : JSON.stringify(payload)})
      .then(function (resp) {
        return resp.text().then(function (t) {
          var data = null;
          try { data = t ? JSON.parse(t) : null; } catch (e) { data = null; }
          if (!resp.ok) {
            var d = data && data.detail;
            throw new Error("HTTP " + resp.status + ": " +
                            (typeof d === "string" ? d : JSON.stringify(d || t)));
          }
          return data;
        });
      });
  }
  // --- the incident list: rows arrive rendered by the server over server-sent events
  var list = document.getElementById("incident-rows");
  if (list && window.EventSource) {
    var es = new EventSource(body.getAttribute("data-events"));
    var live = document.getElementById("live");
    es.addEventListener("open", function () { if (live) live.textContent = "● live"; });
    es.addEventListener("error", function () { if (live) live.textContent = "reconnecting"; });
    es.addEventListener("incident", function (ev) {
      var msg = JSON.parse(ev.data);
      var tpl = document.createElement("template");
      tpl.innerHTML = msg.html.trim();
      var row = tpl.content.firstElementChild;
      var old = document.getElementById("inc-" + msg.id);
      if (old) { old.remove(); }
      var empty = document.getElementById("no-incidents");
      if (empty) { empty.remove(); }
      row.classList.add("new");
      list.insertBefore(row, list.firstElementChild);
    });
  }
  // --- the incident page's feedback buttons, through the JSON API
  var fp = document.getElementById("mark-fp");
  if (fp) {
    fp.addEventListener("click", function () {
      fp.disabled = true;
      say("marking as a false positive ...", true);
      send("POST", body.getAttribute("data-fp-url"), {reason: "marked on the incident page"})
        .then(function () {
          var b = document.getElementById("status");
          b.textContent = "false_positive";
          b.className = "badge false_positive";
          say("Marked as a false positive: the detector becomes less sensitive on " +
              "these series.", true);
        })
        .catch(function (e) { fp.disabled = false; say("Not marked: " + e.message, false); });
    });
  }
  var mute = document.getElementById("mute-form");
  if (mute) {
    mute.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var what = JSON.parse(mute.elements["what"].value);
      var dur = Number(mute.elements["duration"].value);
      var payload = {duration_s: dur, reason: "muted on the incident page"};
      if (what.series) { payload.series = what.series; } else { payload.matchers = what.matchers; }
      var btn = document.getElementById("mute-btn");
      btn.disabled = true;
      send("POST", body.getAttribute("data-mute-url"), payload)
        .then(function (m) {
          btn.disabled = false;
          var until = new Date(m.until * 1000).toISOString().slice(0, 19).replace("T", " ") +
                      " UTC";
          say("Muted " + mute.elements["what"].selectedOptions[0].textContent +
              " until " + until + " (mute " + m.id + ").", true);
          var ul = document.getElementById("mutes");
          if (ul) {
            var li = document.createElement("li");
            li.textContent = Object.keys(m.matchers).sort().map(function (k) {
              return k + "=" + m.matchers[k];
            }).join(", ") + " until " + until;
            ul.appendChild(li);
            var none = document.getElementById("no-mutes");
            if (none) none.remove();
          }
        })
        .catch(function (e) { btn.disabled = false; say("Not muted: " + e.message, false); });
    });
  }
})();
"""
