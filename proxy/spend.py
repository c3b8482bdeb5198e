"""Where the money went: the ledger grouped and summed, for `GET /v1/spend` and `faregate spend`.

``GET /v1/spend?group_by=model&start=2026-11-01&end=2026-11-07`` (admin key) answers::

    {"object": "spend", "group_by": "model", "start": "...Z", "end": "...Z",
     "data": [{"group": "gpt-4o-mini", "requests": 120, "prompt_tokens": ..., "completion_tokens": ...,
               "cached_tokens": ..., "cost_usd": 0.0123, "saved_usd": 0.0, "errors": 2,
               "unpriced": 0, "estimated": 3}, ...],
     "total": {...the same fields over the whole range...}}

- ``group_by``: model, provider, key (the key's id), user, tag, route, day or hour (UTC).
  A request with several tags counts once under each, so tag groups can add up to more
  than the total; requests without the field (no user, no tag...) form the group null.
- ``start``/``end``: ISO 8601 date or date-time (UTC unless an offset is given), epoch
  seconds, or a duration back from now (``7d``, ``24h``, ``30m``). ``start`` is inclusive,
  ``end`` exclusive, except that a bare date as ``end`` includes that whole day. Defaults:
  everything up to now.
- ``limit``: most groups returned (default 1000), the costliest first (day/hour: in time order).
- ``errors`` counts answers with status >= 400 (client errors included); ``unpriced``
  served requests with no known price; ``estimated`` requests whose tokens were counted by
  the gateway.

Rows still buffered in the answering worker are written first; other workers' rows appear
within their ``ledger.flush_interval_s``.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
import time
from typing import Mapping

from aiohttp import web

from .errors import GatewayError, bad_request

__all__ = ["GROUPS", "SpendQuery", "parse_time", "parse_query", "query_spend", "spend_handler",
           "format_table"]

GROUPS: dict[str, str] = {
    "model": "model",
    "provider": "provider",
    "key": "key_id",
    "user": '"user"',
    "tag": "t.value",
    "route": "route",
    "day": "strftime('%Y-%m-%d', ts, 'unixepoch')",
    "hour": "strftime('%Y-%m-%dT%H:00Z', ts, 'unixepoch')",
}
_TIME_GROUPS = ("day", "hour")
FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cost_usd", "saved_usd",
          "errors", "unpriced", "estimated")
_AGGREGATES = ("COUNT(*), TOTAL(prompt_tokens), TOTAL(completion_tokens), TOTAL(cached_tokens), "
               "TOTAL(cost_usd), TOTAL(saved_usd), TOTAL(status >= 400 OR status = 0), "
               "TOTAL(cost_usd IS NULL AND status > 0 AND status < 400), TOTAL(usage_estimated)")
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class SpendQuery:
    __slots__ = ("group_by", "start", "end", "limit")

    def __init__(self, group_by: str = "model", start: float | None = None, end: float | None = None,
                 limit: int = 1000):
        self.group_by, self.start, self.end, self.limit = group_by, start, end, limit


def parse_time(value: str, param: str, *, now: float | None = None, end: bool = False) -> float:
    """Epoch seconds from an ISO date/date-time, epoch seconds, or a duration ago ("7d").
    Raises ValueError naming `param`."""
    v = value.strip()
    now = time.time() if now is None else now
    try:
        return float(v)
    except ValueError:
        pass
    m = _DURATION_RE.match(v)
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{param}: expected an ISO 8601 date or date-time (2026-11-01, "
                         f"2026-11-01T12:00:00Z), epoch seconds, or a duration such as 7d or 24h; "
                         f"got {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    ts = when.timestamp()
    if end and _DATE_RE.match(v):
        ts += 86400.0  # a bare date as the end: that whole day
    return ts


def parse_query(query: Mapping[str, str], *, now: float | None = None) -> SpendQuery:
    """The query string of /v1/spend; a bad value raises GatewayError 400 naming the parameter."""
    group_by = query.get("group_by", "model").strip().lower()
    if group_by not in GROUPS:
        raise bad_request(f"group_by: expected one of {', '.join(GROUPS)}; got {group_by!r}", "group_by")
    out = SpendQuery(group_by)
    for name in ("start", "end"):
        raw = query.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            setattr(out, name, parse_time(raw, name, now=now, end=name == "end"))
        except ValueError as exc:
            raise bad_request(str(exc), name) from None
    if out.start is not None and out.end is not None and out.start > out.end:
        raise bad_request("start: the start of the range is after its end", "start")
    raw_limit = query.get("limit")
    if raw_limit is not None:
        try:
            out.limit = int(raw_limit)
            if out.limit < 1:
                raise ValueError
        except ValueError:
            raise bad_request(f"limit: expected a positive integer; got {raw_limit!r}", "limit") from None
    return out


def _row(group, values) -> dict:
    d = {"group": group}
    for name, v in zip(FIELDS, values):
        d[name] = round(v, 9) if name in ("cost_usd", "saved_usd") else int(v or 0)
    return d


def query_spend(path: str, q: SpendQuery) -> tuple[list[dict], dict]:
    """(groups, total) from the ledger at `path`, opened read-only. Blocking: call it off the
    event loop. Raises FileNotFoundError when there is no ledger there."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.OperationalError as exc:
        raise FileNotFoundError(f"no ledger at {path} ({exc})") from None
    try:
        where, args = [], []
        if q.start is not None:
            where.append("ts >= ?")
            args.append(q.start)
        if q.end is not None:
            where.append("ts < ?")
            args.append(q.end)
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        source = "requests"
        if q.group_by == "tag":
            source = "requests LEFT JOIN json_each(requests.tags) AS t"
        order = "grp" if q.group_by in _TIME_GROUPS else "TOTAL(cost_usd) DESC, COUNT(*) DESC, grp"
        sql = (f"SELECT {GROUPS[q.group_by]} AS grp, {_AGGREGATES} FROM {source}{cond} "
               f"GROUP BY grp ORDER BY {order} LIMIT ?")
        try:
            groups = [_row(r[0], r[1:]) for r in conn.execute(sql, (*args, q.limit))]
            total = conn.execute(f"SELECT {_AGGREGATES} FROM requests{cond}", args).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                raise FileNotFoundError(f"{path} is not a faregate ledger") from None
            raise
        return groups, _row(None, total)
    finally:
        conn.close()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat().replace("+00:00", "Z")


async def spend_handler(request: web.Request) -> web.Response:
    from .app import STATE

    state = request.app[STATE]
    key = state.keys.authenticate(request)
    if key is not None and not key.admin:
        raise GatewayError(403, "GET /v1/spend needs an admin key (keys[].admin: true in the config)",
                           code="admin_key_required")
    q = parse_query(request.query)
    ledger = state.ledger
    if ledger is None:
        raise GatewayError(404, "the spend ledger is disabled (ledger.enabled in the config)",
                           code="ledger_disabled")
    await ledger.flush()
    try:
        groups, total = await asyncio.to_thread(query_spend, ledger.path, q)
    except FileNotFoundError as exc:
        raise GatewayError(503, f"the spend ledger cannot be read: {exc}", code="ledger_unavailable") from None
    return web.json_response({"object": "spend", "group_by": q.group_by, "start": _iso(q.start),
                              "end": _iso(q.end if q.end is not None else time.time()),
                              "data": groups, "total": total})


# ---- terminal table (faregate spend) -------------------------------------------------------

_HEADERS = (("group", "{}"), ("requests", "int"), ("prompt_tokens", "int"), ("completion_tokens", "int"),
            ("cached_tokens", "int"), ("cost_usd", "usd"), ("saved_usd", "usd"), ("errors", "int"))


def _cell(value, kind: str) -> str:
    if kind == "int":
        return f"{int(value):,}"
    if kind == "usd":
        return f"{value:,.6f}"
    return "(none)" if value is None else str(value)


def format_table(group_by: str, groups: list[dict], total: dict) -> str:
    """An aligned text table: one line per group, then the total."""
    titles = [group_by if name == "group" else name.replace("_tokens", "").replace("_usd", " $")
              for name, _ in _HEADERS]
    lines = [[_cell(g[name], kind) for name, kind in _HEADERS] for g in groups]
    foot = [_cell(total[name], kind) if name != "group" else "TOTAL" for name, kind in _HEADERS]
    widths = [max(len(r[i]) for r in (titles, foot, *lines)) for i in range(len(titles))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [fmt(titles), rule, *(fmt(r) for r in lines)]
    if not lines:
        out.append("(no requests in this range)")
    out += [rule, fmt(foot)]
    if total.get("unpriced"):
        out.append(f"{total['unpriced']:,} served request(s) had no known price: counted as $0 "
                   f"(give them one in the catalog or with models[].price)")
    if group_by == "tag":
        out.append("a request with several tags counts under each of them")
    return "\n".join(out)


def spend_command(db: str | None, config: str | None, group_by: str, since: str | None,
                  until: str | None, limit: int, as_json: bool) -> int:
    """`faregate spend`: the same grouping as /v1/spend, read from the ledger file directly."""
    import sys

    import orjson

    from .config import ConfigError, LedgerConfig, load_config

    if db is None:
        try:
            db = load_config(config).ledger.path if config else LedgerConfig().path
        except ConfigError as exc:
            print(f"faregate: config error: {exc}", file=sys.stderr)
            return 2
    query = {"group_by": group_by, "limit": str(limit)}
    if since:
        query["start"] = since
    if until:
        query["end"] = until
    try:
        q = parse_query(query)
    except GatewayError as exc:
        flag = {"start": "--since", "end": "--until"}.get(exc.param or "", f"--{exc.param}")
        print(f"faregate spend: {flag}: {exc.message.split(': ', 1)[-1]}", file=sys.stderr)
        return 2
    try:
        groups, total = query_spend(db, q)
    except FileNotFoundError as exc:
        print(f"faregate spend: {exc}", file=sys.stderr)
        return 1
    if as_json:
        print(orjson.dumps({"group_by": q.group_by, "start": _iso(q.start), "end": _iso(q.end),
                            "data": groups, "total": total}, option=orjson.OPT_INDENT_2).decode())
        return 0
    span = f"{_iso(q.start) or 'the beginning'} to {_iso(q.end) or 'now'}"
    print(f"# spend by {q.group_by}, {span} ({db})")
    print(format_table(q.group_by, groups, total))
    return 0
