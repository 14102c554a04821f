"""Line-protocol parsing: one line to measurement, tags, fields and timestamp.

A plain line (no backslash, no double quote) is split at its spaces, commas and equals
signs (:func:`_parse_line`); anything else goes through the escape-aware scanner
(:func:`_parse_line_escaped`), which gives the same result on plain lines.
"""

from __future__ import annotations

_BOOLS = frozenset({"t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"})


def _influx_seconds(ts: int) -> float:
    """Unit from magnitude: ns (Telegraf's default), µs, ms or s."""
    a = abs(ts)
    if a >= 10**17:
        return ts / 1e9
    if a >= 10**14:
        return ts / 1e6
    if a >= 10**11:
        return ts / 1e3
    return float(ts)


def _influx_number(raw: str) -> float | None:
    """Float of a numeric field value; None for strings and booleans (and junk)."""
    if not raw:
        return None
    last = raw[-1]
    try:
        if last == "i" or last == "u":
            return float(int(raw[:-1]))
        if raw[0] == '"' or raw in _BOOLS:
            return None
        return float(raw)
    except (ValueError, OverflowError):
        return None


_Line = tuple[str, list[tuple[str, str]], list[tuple[str, str]], str | None]


def _parse_line(line: str) -> _Line | str:
    """One line of line protocol, or a string saying why it is not one."""
    if "\\" in line or '"' in line:
        return _parse_line_escaped(line)
    parts = line.split(" ")
    if len(parts) not in (2, 3):
        return "expected 'measurement[,tags] fields [timestamp]'"
    head = parts[0].split(",")
    measurement = head[0]
    if not measurement:
        return "empty measurement"
    tags: list[tuple[str, str]] = []
    for item in head[1:]:
        k, eq, v = item.partition("=")
        if not eq or not k or not v or "=" in v:
            return f"bad tag {item!r:.40}"
        tags.append((k, v))
    rest = _parse_rest(parts)
    if isinstance(rest, str):
        return rest
    return measurement, tags, *rest


def _parse_rest(parts: list[str]) -> tuple[list[tuple[str, str]], str | None] | str:
    """Fields and timestamp of a plain line split at its spaces (the head is ``parts[0]``),
    or a string saying why the line is not line protocol."""
    if len(parts) not in (2, 3):
        return "expected 'measurement[,tags] fields [timestamp]'"
    fields: list[tuple[str, str]] = []
    for item in parts[1].split(","):
        k, eq, v = item.partition("=")
        if not eq or not k or not v:
            return f"bad field {item!r:.40}"
        fields.append((k, v))
    ts = parts[2] if len(parts) == 3 else None
    if ts is not None and not ts:
        return "empty timestamp"
    return fields, ts


def _scan(line: str, pos: int, stops: str, escapable: str) -> tuple[str, int]:
    """Read up to the first unescaped char of ``stops``; resolve ``\\x`` for x in escapable."""
    out: list[str] = []
    n = len(line)
    while pos < n:
        c = line[pos]
        if c == "\\" and pos + 1 < n and line[pos + 1] in escapable:
            out.append(line[pos + 1])
            pos += 2
            continue
        if c in stops:
            break
        out.append(c)
        pos += 1
    return "".join(out), pos


def _parse_line_escaped(line: str) -> _Line | str:
    """The general scanner (escapes, quoted string fields); same result as the fast path."""
    n = len(line)
    measurement, pos = _scan(line, 0, ", ", ", ")
    if not measurement:
        return "empty measurement"
    tags: list[tuple[str, str]] = []
    while pos < n and line[pos] == ",":
        k, pos = _scan(line, pos + 1, ",= ", ",= ")
        if pos >= n or line[pos] != "=" or not k:
            return f"bad tag key {k!r:.40}"
        v, pos = _scan(line, pos + 1, ",= ", ",= ")
        if not v or (pos < n and line[pos] == "="):
            return f"bad tag value for {k!r:.40}"
        tags.append((k, v))
    if pos >= n or line[pos] != " ":
        return "missing fields"
    fields: list[tuple[str, str]] = []
    pos += 1
    while True:
        k, pos = _scan(line, pos, ",= ", ",= ")
        if pos >= n or line[pos] != "=" or not k:
            return f"bad field key {k!r:.40}"
        pos += 1
        if pos < n and line[pos] == '"':
            end = pos + 1
            while end < n and line[end] != '"':
                end += 2 if line[end] == "\\" else 1
            if end >= n:
                return f"unterminated string field {k!r:.40}"
            v = line[pos : end + 1]
            pos = end + 1
        else:
            v, pos = _scan(line, pos, ", ", "")
            if not v:
                return f"bad field value for {k!r:.40}"
        fields.append((k, v))
        if pos < n and line[pos] == ",":
            pos += 1
            continue
        break
    ts: str | None = None
    if pos < n:
        if line[pos] != " ":
            return f"unexpected {line[pos]!r} after fields"
        ts = line[pos + 1 :]
        if not ts or " " in ts:
            return "bad timestamp part"
    return measurement, tags, fields, ts
