"""End to end: the openai SDK → `faregate serve` with the response cache → the mock provider."""
from __future__ import annotations

import time

import openai
import orjson
import pytest

from bench.mocks import Behavior, MockThread, OpenAIMock
from gateway import Gateway, http_post

KEY_A, KEY_B = "sk-cache-a", "sk-cache-b"


def _models(mock):
    base = mock.url + "/v1"
    return [
        {"name": "gpt-4o-mini", "provider": "openai", "base_url": base, "api_key": "k"},
        {"name": "shared", "provider": "openai", "model": "gpt-4o-mini", "base_url": base, "api_key": "k"},
        {"name": "warm", "provider": "openai", "model": "gpt-4o-mini", "base_url": base, "api_key": "k"},
        {"name": "sem", "provider": "openai", "model": "gpt-4o-mini", "base_url": base, "api_key": "k"},
        {"name": "nocache", "provider": "openai", "model": "gpt-4o-mini", "base_url": base, "api_key": "k"},
        {"name": "text-embedding-3-small", "provider": "openai", "base_url": base, "api_key": "k"},
    ]


@pytest.fixture(scope="module")
def mock():
    with MockThread(OpenAIMock(Behavior(chunks=12))) as m:
        yield m


@pytest.fixture(scope="module")
def gw(mock):
    config = {
        "keys": [{"key": KEY_A, "id": "a"}, {"key": KEY_B, "id": "b"}],
        "models": _models(mock),
        "cache": {"enabled": True, "max_bytes": 10_000_000, "default_ttl_s": 600,
                  "routes": {"shared": {"shared_across_keys": True},
                             "warm": {"any_temperature": True},
                             "sem": {"semantic": True},
                             "nocache": {"enabled": False}}},
    }
    with Gateway(config) as g:
        yield g


def client(gw, key=KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=20)


def upstream_calls(mock, model="gpt-4o-mini") -> int:
    return mock.call(lambda: mock.provider.stats["by_model"].get(model, 0))


def ask(c, content, model="gpt-4o-mini", headers=None, **kw):
    r = c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], extra_headers=headers or {}, **kw)
    return r.headers, r.parse()


def test_miss_then_hit_costs_nothing_and_records_the_saving(gw, mock):
    c = client(gw)
    before = upstream_calls(mock)
    h1, r1 = ask(c, "exact one")
    h2, r2 = ask(c, "exact one")
    assert h1["x-faregate-cache"] == "miss" and h2["x-faregate-cache"] == "hit"
    assert upstream_calls(mock) == before + 1
    assert r2.choices[0].message.content == r1.choices[0].message.content
    assert r2.usage.total_tokens == r1.usage.total_tokens
    assert h2["x-faregate-cost-usd"] == "0" and float(h2["x-faregate-saved-usd"]) > 0
    assert h2["x-faregate-model"] == "gpt-4o-mini" and h2["x-faregate-attempts"] == "0"
    time.sleep(0.2)
    hits = [line for line in gw.access_log() if line.get("cache") == "hit" and line["id"] == h2["x-request-id"]]
    assert hits and hits[0]["saved_usd"] > 0 and hits[0].get("cost_usd", 0) == 0


def test_stream_is_stored_assembled_and_replayed_as_a_stream(gw, mock):
    c = client(gw)
    before = upstream_calls(mock)
    live = list(c.chat.completions.create(model="gpt-4o-mini", stream=True,
                                          messages=[{"role": "user", "content": "stream me"}]))
    live_text = "".join(ch.choices[0].delta.content or "" for ch in live if ch.choices)
    time.sleep(0.1)  # the store runs after the last byte
    raw = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream me"}])
    assert raw.headers["x-faregate-cache"] == "hit"
    assert raw.headers["content-type"].startswith("text/event-stream")
    replay = list(raw.parse())
    assert "".join(ch.choices[0].delta.content or "" for ch in replay if ch.choices) == live_text
    assert replay[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in replay if ch.choices][-1] == "stop"
    assert replay[-1].choices == [] and replay[-1].usage.completion_tokens > 0
    h, plain = ask(c, "stream me")  # the same entry answers a non-stream request
    assert h["x-faregate-cache"] == "hit" and plain.choices[0].message.content == live_text
    assert upstream_calls(mock) == before + 1


def test_request_header_controls(gw, mock):
    c = client(gw)
    ask(c, "controls")
    before = upstream_calls(mock)
    h, _ = ask(c, "controls", headers={"x-faregate-cache": "no-cache"})
    assert h["x-faregate-cache"] == "miss" and upstream_calls(mock) == before + 1
    h, _ = ask(c, "not kept", headers={"x-faregate-cache": "no-store"})
    h, _ = ask(c, "not kept")
    assert h["x-faregate-cache"] == "miss"
    ask(c, "short lived", headers={"x-faregate-cache": "ttl=1"})
    assert ask(c, "short lived")[0]["x-faregate-cache"] == "hit"
    time.sleep(1.2)
    assert ask(c, "short lived")[0]["x-faregate-cache"] == "miss"
    with pytest.raises(openai.BadRequestError, match="x-faregate-cache"):
        ask(c, "bad", headers={"x-faregate-cache": "forever"})


def test_temperature_policy_and_route_switches(gw, mock):
    c = client(gw)
    before = upstream_calls(mock)
    h1, _ = ask(c, "creative", temperature=0.9)
    h2, _ = ask(c, "creative", temperature=0.9)
    assert h1["x-faregate-cache"] == h2["x-faregate-cache"] == "off"
    assert upstream_calls(mock) == before + 2
    ask(c, "creative", model="warm", temperature=0.9)
    assert ask(c, "creative", model="warm", temperature=0.9)[0]["x-faregate-cache"] == "hit"
    ask(c, "zero", temperature=0)
    assert ask(c, "zero", temperature=0)[0]["x-faregate-cache"] == "hit"
    h, _ = ask(c, "never", model="nocache")
    assert h["x-faregate-cache"] == "off"


def test_scope_is_per_client_key_unless_shared(gw, mock):
    a, b = client(gw, KEY_A), client(gw, KEY_B)
    ask(a, "scoped")
    assert ask(b, "scoped")[0]["x-faregate-cache"] == "miss"
    assert ask(a, "scoped")[0]["x-faregate-cache"] == "hit"
    ask(a, "scoped", model="shared")
    assert ask(b, "scoped", model="shared")[0]["x-faregate-cache"] == "hit"


def test_failed_answers_are_not_stored(gw, mock):
    c = client(gw)
    mock.call(lambda: mock.provider.model_behavior.__setitem__("gpt-4o-mini", {"status": 500}))
    try:
        with pytest.raises(openai.InternalServerError):
            ask(c, "will fail")
    finally:
        mock.call(lambda: mock.provider.model_behavior.clear())
    mock.call(lambda: mock.provider.model_behavior.__setitem__("gpt-4o-mini", {"fault": "cut", "cut_after": 2}))
    try:
        with pytest.raises(Exception):
            list(c.chat.completions.create(model="gpt-4o-mini", stream=True,
                                           messages=[{"role": "user", "content": "cut short"}]))
    finally:
        mock.call(lambda: mock.provider.model_behavior.clear())
    time.sleep(0.1)
    assert ask(c, "will fail")[0]["x-faregate-cache"] == "miss"
    assert ask(c, "cut short")[0]["x-faregate-cache"] == "miss"


def test_semantic_hit_on_paraphrase_and_miss_on_near_miss(gw, mock):
    c = client(gw)
    h1, r1 = ask(c, "How do I reset my password?", model="sem")
    h2, r2 = ask(c, "How can I reset my password?", model="sem")
    assert h1["x-faregate-cache"] == "miss" and h2["x-faregate-cache"] == "semantic-hit"
    assert 0.8 <= float(h2["x-faregate-cache-similarity"]) <= 1.0
    assert r2.choices[0].message.content == r1.choices[0].message.content
    ask(c, "How do I turn dark mode on?", model="sem")
    assert ask(c, "How do I turn dark mode off?", model="sem")[0]["x-faregate-cache"] == "miss"
    ask(c, "Convert miles to km", model="sem")
    assert ask(c, "Convert km to miles", model="sem")[0]["x-faregate-cache"] == "miss"
    # another system prompt is another context: no semantic hit across it
    r = c.chat.completions.with_raw_response.create(model="sem", messages=[
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "How can I reset my password?"}])
    assert r.headers["x-faregate-cache"] == "miss"
    # not on routes that did not opt in
    ask(c, "How do I reset my password?")
    assert ask(c, "How can I reset my password?")[0]["x-faregate-cache"] == "miss"


def test_semantic_with_a_gateway_routed_embeddings_deployment(mock):
    config = {"models": _models(mock),
              "cache": {"enabled": True, "semantic": {"enabled": True, "embedder": "gateway",
                                                      "model": "text-embedding-3-small", "threshold": 0.75}}}
    with Gateway(config) as g:
        c = client(g)
        emb_before = upstream_calls(mock, "text-embedding-3-small")
        h1, r1 = ask(c, "What is the capital city of France?")
        h2, r2 = ask(c, "What's the capital city of France?")
        assert h1["x-faregate-cache"] == "miss" and h2["x-faregate-cache"] == "semantic-hit"
        assert r2.choices[0].message.content == r1.choices[0].message.content
        ask(c, "What is the capital city of Germany?")
        h3, _ = ask(c, "What is the capital city of Spain?")
        assert h3["x-faregate-cache"] == "miss"  # embeddings alike, the guard says no
        assert upstream_calls(mock, "text-embedding-3-small") == emb_before + 4
        time.sleep(0.2)
        assert any(line["endpoint"] == "embeddings" for line in g.access_log())


def _redis_config(mock, url, **semantic):
    return {"models": _models(mock),
            "cache": {"enabled": True, "backend": "redis", "redis_url": url, "redis_timeout_s": 0.2,
                      "redis_retry_s": 0.5, "semantic": {"refresh_s": 0.05, **semantic},
                      "routes": {"sem": {"semantic": True}}}}


def test_two_gateways_share_one_redis_cache(mock, redis_server):
    cfg = _redis_config(mock, redis_server.url)
    with Gateway(cfg) as g1, Gateway(cfg) as g2:
        c1, c2 = client(g1), client(g2)
        before = upstream_calls(mock)
        h1, r1 = ask(c1, "shared answer")
        time.sleep(0.1)
        h2, r2 = ask(c2, "shared answer")
        assert (h1["x-faregate-cache"], h2["x-faregate-cache"]) == ("miss", "hit")
        assert r1.choices[0].message.content == r2.choices[0].message.content
        assert upstream_calls(mock) == before + 1
        ask(c1, "How do I reset my password?", model="sem")
        time.sleep(0.2)
        h, _ = ask(c2, "How can I reset my password?", model="sem")
        assert h["x-faregate-cache"] == "semantic-hit"


def test_redis_killed_mid_run_then_back(mock, redis_server):
    with Gateway(_redis_config(mock, redis_server.url)) as g:
        c = client(g)
        ask(c, "before the outage")
        time.sleep(0.1)
        assert ask(c, "before the outage")[0]["x-faregate-cache"] == "hit"
        redis_server.kill()
        for i in range(5):  # still served, cache bypassed
            h, r = ask(c, "during the outage")
            assert h["x-faregate-cache"] == "bypass" and r.choices[0].message.content
        redis_server.start()  # an empty Redis on the same port
        deadline = time.monotonic() + 10
        while ask(c, "after the outage")[0]["x-faregate-cache"] == "bypass":
            assert time.monotonic() < deadline, "the gateway did not reconnect"
            time.sleep(0.1)
        time.sleep(0.1)
        assert ask(c, "after the outage")[0]["x-faregate-cache"] == "hit"
        logged = [line for line in g.stderr().splitlines() if "redis" in line and "unavailable" in line]
        assert 1 <= len(logged) <= 3, logged  # once per retry interval, not once per request
