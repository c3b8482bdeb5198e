"""Spend queries: /v1/spend grouping, time ranges, parameter errors and admin auth; the
`faregate spend` table."""
from __future__ import annotations

import datetime as dt
import time

import openai
import pytest

from bench.mocks import Behavior, MockThread, OpenAIMock
from gateway import Gateway, http_get
from proxy.cli import main as cli_main
from proxy.errors import GatewayError
from proxy.ledger import connect, row_of
from proxy.record import RequestRecord
from proxy.spend import SpendQuery, format_table, parse_query, parse_time, query_spend


def utc(*args) -> float:
    return dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()


D1, D2, D3 = utc(2026, 11, 1, 10, 0), utc(2026, 11, 1, 10, 45), utc(2026, 11, 2, 15, 30)


def rec(ts, model="gpt-4o-mini", provider="openai", key="team-a", user=None, tags=(), status=200,
        prompt=100, completion=10, cached=0, cost=0.001, saved=0.0, estimated=False, route=None):
    r = RequestRecord(ts, f"r{ts}-{model}-{status}", "chat")
    r.key_id, r.user, r.tags, r.route = key, user, list(tags), route or model
    r.provider, r.model, r.status = provider, model, status
    r.prompt_tokens, r.completion_tokens, r.cached_tokens = prompt, completion, cached
    r.cost_usd, r.saved_usd, r.usage_estimated = cost, saved, estimated
    return r


@pytest.fixture
def ledger(tmp_path):
    path = str(tmp_path / "spend.sqlite3")
    recs = [
        rec(D1, user="alice", tags=["web", "exp"], cached=40),
        rec(D2, user="alice", tags=["web"], estimated=True),
        rec(D2, model="claude-sonnet-4-5", provider="anthropic", key="batch", user="bob", cost=0.02,
            route="smart"),
        rec(D3, model="claude-sonnet-4-5", provider="anthropic", key="batch", tags=["exp"], cost=0.03,
            saved=0.01, route="smart"),
        rec(D3, status=429, prompt=0, completion=0, cost=None),       # an upstream error
        rec(D3, model="local", provider="ollama", cost=None),         # served, unpriced
    ]
    conn = connect(path)
    conn.executemany(f"INSERT INTO requests VALUES ({', '.join('?' * len(row_of(recs[0])))})",
                     [row_of(r) for r in recs])
    conn.close()
    return path


def by_group(groups):
    return {g["group"]: g for g in groups}


# ---- query --------------------------------------------------------------------------------------

def test_group_by_model_sums_and_orders_by_cost(ledger):
    groups, total = query_spend(ledger, SpendQuery("model"))
    assert [g["group"] for g in groups] == ["claude-sonnet-4-5", "gpt-4o-mini", "local"]
    claude, mini, local = groups
    assert claude == {"group": "claude-sonnet-4-5", "requests": 2, "prompt_tokens": 200,
                      "completion_tokens": 20, "cached_tokens": 0, "cost_usd": 0.05, "saved_usd": 0.01,
                      "errors": 0, "unpriced": 0, "estimated": 0}
    assert mini["requests"] == 3 and mini["errors"] == 1 and mini["cached_tokens"] == 40
    assert mini["cost_usd"] == pytest.approx(0.002) and mini["estimated"] == 1
    assert local["unpriced"] == 1 and local["cost_usd"] == 0
    assert total["requests"] == 6 and total["cost_usd"] == pytest.approx(0.052)
    assert total["saved_usd"] == pytest.approx(0.01) and total["errors"] == 1


@pytest.mark.parametrize("group_by, expected", [
    ("provider", {"openai": 3, "anthropic": 2, "ollama": 1}),
    ("key", {"team-a": 4, "batch": 2}),
    ("user", {"alice": 2, "bob": 1, None: 3}),
    ("route", {"gpt-4o-mini": 3, "smart": 2, "local": 1}),
    ("tag", {"web": 2, "exp": 2, None: 3}),  # a request with two tags counts under both
    ("day", {"2026-11-01": 3, "2026-11-02": 3}),
    ("hour", {"2026-11-01T10:00Z": 3, "2026-11-02T15:00Z": 3}),
])
def test_group_by(ledger, group_by, expected):
    groups, total = query_spend(ledger, SpendQuery(group_by))
    assert {g: row["requests"] for g, row in by_group(groups).items()} == expected
    assert total["requests"] == 6  # the total is per request, whatever the grouping


def test_time_range_and_limit(ledger):
    groups, total = query_spend(ledger, SpendQuery("day", start=utc(2026, 11, 2), end=None))
    assert [g["group"] for g in groups] == ["2026-11-02"] and total["requests"] == 3
    groups, total = query_spend(ledger, SpendQuery("model", start=D1, end=D2))  # end exclusive
    assert total["requests"] == 1
    groups, _ = query_spend(ledger, SpendQuery("model", limit=1))
    assert [g["group"] for g in groups] == ["claude-sonnet-4-5"]


def test_missing_or_foreign_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        query_spend(str(tmp_path / "nope.sqlite3"), SpendQuery())
    assert not (tmp_path / "nope.sqlite3").exists()  # opened read-only: nothing created
    import sqlite3
    sqlite3.connect(tmp_path / "other.sqlite3").execute("CREATE TABLE x (a)").connection.close()
    with pytest.raises(FileNotFoundError, match="not a faregate ledger"):
        query_spend(str(tmp_path / "other.sqlite3"), SpendQuery())


# ---- parameters ---------------------------------------------------------------------------------

def test_parse_time_forms():
    now = utc(2026, 11, 10, 12, 0)
    assert parse_time("2026-11-01", "start") == utc(2026, 11, 1)
    assert parse_time("2026-11-01", "end", end=True) == utc(2026, 11, 2)  # a bare end date: that day
    assert parse_time("2026-11-01T10:30:00Z", "start") == utc(2026, 11, 1, 10, 30)
    assert parse_time("2026-11-01T12:30:00+02:00", "start") == utc(2026, 11, 1, 10, 30)
    assert parse_time("1790000000", "start") == 1790000000.0
    assert parse_time("7d", "start", now=now) == now - 7 * 86400
    assert parse_time("90m", "start", now=now) == now - 5400
    with pytest.raises(ValueError, match="^start: expected an ISO 8601"):
        parse_time("last tuesday", "start")


@pytest.mark.parametrize("query, param", [
    ({"group_by": "colour"}, "group_by"),
    ({"start": "yesterday-ish"}, "start"),
    ({"end": "2026-13-45"}, "end"),
    ({"start": "2026-11-05", "end": "2026-11-01"}, "start"),
    ({"limit": "0"}, "limit"),
    ({"limit": "many"}, "limit"),
])
def test_bad_parameters_are_400_naming_the_parameter(query, param):
    with pytest.raises(GatewayError) as exc:
        parse_query(query)
    assert exc.value.status == 400 and exc.value.param == param
    assert exc.value.message.startswith(param + ":")


def test_defaults():
    q = parse_query({})
    assert (q.group_by, q.start, q.end, q.limit) == ("model", None, None, 1000)


# ---- the terminal table ------------------------------------------------------------------------

def test_table_is_aligned(ledger):
    groups, total = query_spend(ledger, SpendQuery("model"))
    text = format_table("model", groups, total)
    lines = text.splitlines()
    assert lines[0].split() == ["model", "requests", "prompt", "completion", "cached", "cost", "$",
                                "saved", "$", "errors"]
    assert lines[-2].startswith("TOTAL") and "0.052000" in lines[-2]
    assert lines[-1].startswith("1 served request(s) had no known price")
    body = [ln for ln in lines[:-1] if not ln.startswith("-")]
    assert len({len(ln) for ln in body}) == 1  # right-aligned numbers: every line equally long
    assert "claude-sonnet-4-5" in lines[2]


def test_cli_spend(ledger, capsys):
    assert cli_main(["spend", "--db", ledger, "--group-by", "provider", "--since", "2026-11-02",
                     "--until", "2026-11-02"]) == 0
    out = capsys.readouterr().out
    assert "# spend by provider, 2026-11-02T00:00:00Z to 2026-11-03T00:00:00Z" in out
    assert "anthropic" in out and "ollama" in out and "TOTAL" in out
    assert cli_main(["spend", "--db", ledger, "--json", "-g", "day"]) == 0
    assert '"group": "2026-11-01"' in capsys.readouterr().out


def test_cli_spend_errors(tmp_path, capsys):
    assert cli_main(["spend", "--db", str(tmp_path / "none.sqlite3")]) == 1
    assert "no ledger at" in capsys.readouterr().err
    assert cli_main(["spend", "--db", str(tmp_path / "none.sqlite3"), "--since", "soonish"]) == 2
    assert "--since: expected an ISO 8601" in capsys.readouterr().err


# ---- the endpoint, on a real gateway ------------------------------------------------------------

ADMIN, USER = "sk-admin-0001", "sk-user-0002"


def test_spend_endpoint_auth_and_grouping():
    with MockThread(OpenAIMock(Behavior(chunks=4))) as mock:
        config = {"keys": [{"key": ADMIN, "id": "ops", "admin": True}, {"key": USER, "id": "web"}],
                  "ledger": {"flush_interval_s": 30},  # /v1/spend flushes what it has itself
                  "models": [{"name": "gpt-4o-mini", "base_url": mock.url + "/v1"},
                             {"name": "gpt-4o", "base_url": mock.url + "/v1"}]}
        with Gateway(config) as gw:
            user = openai.OpenAI(base_url=gw.url + "/v1", api_key=USER, max_retries=0)
            admin = openai.OpenAI(base_url=gw.url + "/v1", api_key=ADMIN, max_retries=0)
            msg = [{"role": "user", "content": "hi"}]
            for _ in range(3):
                user.chat.completions.create(model="gpt-4o-mini", messages=msg, user="alice",
                                             extra_headers={"x-faregate-tags": "checkout, beta"})
            admin.chat.completions.create(model="gpt-4o", messages=msg)

            url = gw.url + "/v1/spend"
            r = http_get(url)
            assert r.status == 401 and r.json()["error"]["code"] == "missing_api_key"
            r = http_get(url, {"authorization": f"Bearer {USER}"})
            assert r.status == 403 and "admin key" in r.json()["error"]["message"]
            r = http_get(url + "?group_by=key", {"authorization": f"Bearer {ADMIN}"})
            assert r.status == 200
            body = r.json()
            assert body["object"] == "spend" and body["group_by"] == "key"
            assert {g["group"]: g["requests"] for g in body["data"]} == {"web": 3, "ops": 1}
            assert body["total"]["cost_usd"] > 0
            assert set(body["data"][0]) == {"group", "requests", "prompt_tokens", "completion_tokens",
                                            "cached_tokens", "cost_usd", "saved_usd", "errors",
                                            "unpriced", "estimated"}
            r = http_get(gw.url + "/spend?group_by=tag", {"authorization": f"Bearer {ADMIN}"})
            assert {g["group"]: g["requests"] for g in r.json()["data"]} == {"checkout": 3, "beta": 3, None: 1}
            r = http_get(url + "?group_by=user&start=1h", {"authorization": f"Bearer {ADMIN}"})
            assert {g["group"]: g["requests"] for g in r.json()["data"]} == {"alice": 3, None: 1}
            tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
            r = http_get(url + f"?start={tomorrow}", {"authorization": f"Bearer {ADMIN}"})
            assert r.json()["data"] == [] and r.json()["total"]["requests"] == 0
            r = http_get(url + "?group_by=model&end=someday", {"authorization": f"Bearer {ADMIN}"})
            assert r.status == 400 and r.json()["error"]["param"] == "end"
            # the unauthenticated tries were requests too, but not ledger rows: they were not
            # chat or embeddings requests (only those are booked)
            assert body["total"]["requests"] == 4


def test_spend_on_an_open_gateway_and_with_the_ledger_off():
    with MockThread(OpenAIMock()) as mock:
        models = [{"name": "m", "base_url": mock.url + "/v1"}]
        with Gateway({"models": models}) as gw:
            assert http_get(gw.url + "/v1/spend").status == 200  # no keys at all: open, like the rest
        with Gateway({"models": models, "ledger": {"enabled": False}}) as gw:
            r = http_get(gw.url + "/v1/spend")
            assert r.status == 404 and r.json()["error"]["code"] == "ledger_disabled"
