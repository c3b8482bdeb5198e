"""Cost in the request path, end to end: a real gateway, the mock provider, the ledger file.

x-faregate-cost-usd on non-stream answers; streamed cost in the ledger with the provider's
usage and, when it sends none, with counted (estimated) usage; unpriced models; a config
`price:`; a changed user catalog file changing the cost without a restart; an invalid
catalog entry refused at start-up.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time

import openai
import orjson
import pytest

from bench.mocks import Behavior, MockThread, OpenAIMock
from gateway import Gateway, stream_lines
from proxy._fast import count_text_tokens
from proxy.accounting import count_prompt_tokens, format_usd
from proxy.catalog import default_catalog
from proxy.cost import cost_usd

MSG = [{"role": "user", "content": "Say hello to the ledger, please"}]
ANSWER = "the quick brown fox jumps over"  # what the mock writes with chunks=6


def wait_rows(path, where: str, n: int = 1, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    got: list[dict] = []
    while time.monotonic() < deadline:
        if os.path.exists(path):
            conn = sqlite3.connect(path)
            conn.row_factory = sqlite3.Row
            try:
                got = [dict(r) for r in conn.execute(f"SELECT * FROM requests WHERE {where}")]
            except sqlite3.OperationalError:
                got = []
            finally:
                conn.close()
            if len(got) >= n:
                return got
        time.sleep(0.05)
    raise AssertionError(f"expected {n} ledger row(s) where {where}, found {got}")


def price(name: str):
    return default_catalog()[name]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    catalog_file = tmp_path_factory.mktemp("catalog") / "prices.json"
    write_catalog(catalog_file, input=1.0, output=2.0)
    with MockThread(OpenAIMock(Behavior(chunks=6))) as mock:
        up = mock.url + "/v1"
        config = {
            "ledger": {"flush_interval_s": 0.05},
            "catalog": {"path": str(catalog_file), "reload_interval_s": 0.1},
            "models": [
                {"name": "gpt-4o-mini", "provider": "openai", "base_url": up},
                {"name": "fast", "provider": "openai", "model": "gpt-4o-mini", "base_url": up},
                {"name": "homegrown", "provider": "openai", "base_url": up},
                {"name": "priced-here", "provider": "openai", "base_url": up,
                 "price": {"input": 3.0, "output": 5.0}},
                {"name": "reloadable", "provider": "openai", "model": "house-model", "base_url": up},
            ],
        }
        with Gateway(config) as gw:
            yield gw, mock, catalog_file


def write_catalog(path, *, input: float, output: float) -> None:
    doc = {"models": {"house": {"provider": "openai", "model": "house-model", "input": input,
                                "output": output, "context_window": 8192, "max_output": 1024}}}
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)  # a new inode: the watcher sees the change whatever the mtime says


@contextlib.contextmanager
def mock_behaves(mock, model: str, **patch):
    mock.call(lambda: mock.provider.model_behavior.__setitem__(model, patch))
    try:
        yield
    finally:
        mock.call(lambda: mock.provider.model_behavior.pop(model, None))


@pytest.fixture
def client(stack):
    gw, _, _ = stack
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0, timeout=20)


def test_non_stream_cost_header_matches_usage_times_catalog(stack, client):
    gw, _, _ = stack
    r = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MSG, extra_headers={"x-request-id": "cost-ns-1"})
    usage = r.parse().usage.model_dump()
    expected = cost_usd(usage, price("gpt-4o-mini")).total_usd
    assert expected > 0
    assert r.headers["x-faregate-cost-usd"] == format_usd(expected)
    assert "x-faregate-cost-estimated" not in r.headers
    row = wait_rows(gw.ledger_path, "request_id = 'cost-ns-1'")[0]
    assert row["cost_usd"] == pytest.approx(expected, abs=1e-12)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row["usage_estimated"] == 0 and row["status"] == 200 and row["route"] == "gpt-4o-mini"


def test_alias_is_priced_by_provider_and_upstream_model(client):
    r = client.chat.completions.with_raw_response.create(model="fast", messages=MSG)
    expected = cost_usd(r.parse().usage.model_dump(), price("gpt-4o-mini")).total_usd
    assert r.headers["x-faregate-cost-usd"] == format_usd(expected)


def test_stream_cost_from_provider_usage(stack, client):
    gw, _, _ = stack
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True},
        extra_headers={"x-request-id": "cost-s-usage"}))
    usage = chunks[-1].usage.model_dump()  # the SDK parsed the final usage chunk
    row = wait_rows(gw.ledger_path, "request_id = 'cost-s-usage'")[0]
    assert row["usage_estimated"] == 0 and row["stream"] == 1 and row["ttft_ms"] > 0
    assert row["completion_tokens"] == usage["completion_tokens"] == 6
    assert row["cost_usd"] == pytest.approx(cost_usd(usage, price("gpt-4o-mini")).total_usd, abs=1e-12)


def test_stream_cost_without_provider_usage_is_counted_and_marked(stack, client):
    gw, mock, _ = stack
    with mock_behaves(mock, "gpt-4o-mini", usage=False):
        chunks = list(client.chat.completions.create(
            model="gpt-4o-mini", messages=MSG, stream=True, extra_headers={"x-request-id": "cost-s-nousage"}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    row = wait_rows(gw.ledger_path, "request_id = 'cost-s-nousage'")[0]
    prompt = count_prompt_tokens({"model": "gpt-4o-mini", "messages": MSG, "stream": True})
    completion = count_text_tokens(ANSWER)
    assert row["usage_estimated"] == 1
    assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, completion)
    expected = cost_usd({"prompt_tokens": prompt, "completion_tokens": completion}, price("gpt-4o-mini"))
    assert row["cost_usd"] == pytest.approx(expected.total_usd, abs=1e-12) and row["cost_usd"] > 0


def test_non_stream_without_usage_is_estimated_in_the_header(stack, client):
    _, mock, _ = stack
    with mock_behaves(mock, "gpt-4o-mini", usage=False):
        r = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    assert r.headers["x-faregate-cost-estimated"] == "true"
    assert float(r.headers["x-faregate-cost-usd"]) > 0


def test_client_leaving_mid_stream_still_books_what_was_generated(stack):
    gw, mock, _ = stack
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MSG, "stream": True})
    with mock_behaves(mock, "gpt-4o-mini", chunks=40, chunk_delay_ms=30):
        with stream_lines(gw.url + "/v1/chat/completions", body, {"x-request-id": "cost-s-left"}) as lines:
            for line in lines:
                if b'"content":" brown"' in line:
                    break
    row = wait_rows(gw.ledger_path, "request_id = 'cost-s-left'")[0]
    assert row["status"] == 499 and row["error_class"] == "client_disconnected"
    assert row["usage_estimated"] == 1 and row["completion_tokens"] > 0 and row["cost_usd"] > 0


def test_unpriced_model_has_no_cost_and_is_not_an_error(stack, client):
    gw, _, _ = stack
    r = client.chat.completions.with_raw_response.create(
        model="homegrown", messages=MSG, extra_headers={"x-request-id": "cost-unpriced"})
    assert r.http_response.status_code == 200
    assert "x-faregate-cost-usd" not in r.headers
    row = wait_rows(gw.ledger_path, "request_id = 'cost-unpriced'")[0]
    assert row["cost_usd"] is None and row["prompt_tokens"] > 0


def test_config_price_wins(client):
    r = client.chat.completions.with_raw_response.create(model="priced-here", messages=MSG)
    u = r.parse().usage
    assert r.headers["x-faregate-cost-usd"] == format_usd(
        round(u.prompt_tokens * 3.0 / 1e6 + u.completion_tokens * 5.0 / 1e6, 9))


def test_changed_catalog_file_changes_cost_without_restart(stack, client):
    gw, _, catalog_file = stack
    pid = gw.proc.pid

    def cost() -> tuple[float, object]:
        r = client.chat.completions.with_raw_response.create(model="reloadable", messages=MSG)
        return float(r.headers["x-faregate-cost-usd"]), r.parse().usage

    before, u = cost()
    assert before == pytest.approx(u.prompt_tokens * 1.0 / 1e6 + u.completion_tokens * 2.0 / 1e6)
    write_catalog(catalog_file, input=10.0, output=20.0)
    deadline = time.monotonic() + 5
    after = before
    while time.monotonic() < deadline and after == before:
        time.sleep(0.1)
        after, u = cost()
    assert after == pytest.approx(u.prompt_tokens * 10.0 / 1e6 + u.completion_tokens * 20.0 / 1e6)
    assert gw.proc.pid == pid and gw.proc.poll() is None
    # an invalid file is refused and the last good catalog stays
    catalog_file.write_text('{"models": {"house": {"provider": "openai", "model": "house-model", '
                            '"input": "cheap", "output": 1, "context_window": 8192, "max_output": 1024}}}')
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "rejected" not in gw.stderr():
        time.sleep(0.1)
    assert "catalog model 'house': field 'input'" in gw.stderr()
    kept, u = cost()
    assert kept == pytest.approx(u.prompt_tokens * 10.0 / 1e6 + u.completion_tokens * 20.0 / 1e6)
    write_catalog(catalog_file, input=1.0, output=2.0)


def test_invalid_catalog_entry_is_a_startup_config_error(tmp_path):
    config = {"models": [{"name": "m", "base_url": "http://127.0.0.1:9/v1"}],
              "catalog": {"overrides": {"gpt-4o": {"output": -3}}}}
    with pytest.raises(RuntimeError) as exc:
        Gateway(config).start()
    message = str(exc.value)
    assert "exited with 2" in message
    assert "catalog.overrides.gpt-4o.output" in message and "catalog model 'gpt-4o': field 'output'" in message

    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  mine:\n    provider: openai\n    model: mine\n    input: 1\n    output: 1\n")
    config["catalog"] = {"path": str(bad)}
    with pytest.raises(RuntimeError) as exc:
        Gateway(config).start()
    assert "catalog model 'mine': field 'context_window': required field is missing" in str(exc.value)
