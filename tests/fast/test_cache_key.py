"""Canonical cache keys, on both implementations."""
import os
import subprocess
import sys

import orjson
import pytest

BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    "temperature": 0.2,
    "max_tokens": 100,
}


def test_shape(kernels):
    key = kernels.cache_key(BODY, "cheap")
    assert isinstance(key, bytes) and len(key) == 16
    assert kernels.cache_key_hex(BODY, "cheap") == key.hex()


def test_key_order_and_whitespace(kernels):
    text = '{ "max_tokens" : 100, "temperature":0.2,\n "messages": [{"content":"Be brief.","role":"system"},{"role":"user","content":"Hi"}], "model":"gpt-4o-mini"}'
    assert kernels.cache_key(orjson.loads(text), "cheap") == kernels.cache_key(BODY, "cheap")


@pytest.mark.parametrize("field,value", [
    ("stream", True), ("stream_options", {"include_usage": True}), ("user", "u-1"),
    ("metadata", {"trace": "x"}), ("store", True), ("service_tier", "flex"),
    ("request_id", "r-1"), ("prompt_cache_key", "k"), ("safety_identifier", "s"),
    ("seed", None), ("tools", None),
])
def test_fields_that_cannot_change_the_answer(kernels, field, value):
    assert kernels.cache_key(dict(BODY, **{field: value}), "cheap") == kernels.cache_key(BODY, "cheap")


@pytest.mark.parametrize("field,value", [
    ("temperature", 0.3), ("top_p", 0.5), ("max_tokens", 101), ("stop", ["\n"]), ("seed", 1),
    ("n", 2), ("logit_bias", {"50256": -100}), ("tool_choice", "none"), ("model", "gpt-4o"),
    ("response_format", {"type": "json_object"}), ("presence_penalty", 0.1),
    ("tools", [{"type": "function", "function": {"name": "f"}}]), ("reasoning_effort", "low"),
    ("some_future_field", 1),
])
def test_fields_that_can(kernels, field, value):
    assert kernels.cache_key(dict(BODY, **{field: value}), "cheap") != kernels.cache_key(BODY, "cheap")


def test_messages_route_and_scope_count(kernels):
    other = dict(BODY, messages=[{"role": "user", "content": "Hi!"}])
    assert kernels.cache_key(other, "cheap") != kernels.cache_key(BODY, "cheap")
    assert kernels.cache_key(BODY, "smart") != kernels.cache_key(BODY, "cheap")
    assert kernels.cache_key(BODY, "cheap", "tenant-a") != kernels.cache_key(BODY, "cheap")


def test_normalisations(kernels):
    base = kernels.cache_key(BODY, "r")
    assert kernels.cache_key(dict(BODY, temperature=0.2, max_tokens=100.0), "r") == base
    mct = {k: v for k, v in BODY.items() if k != "max_tokens"}
    mct["max_completion_tokens"] = 100
    assert kernels.cache_key(mct, "r") == base
    parts = dict(BODY, messages=[BODY["messages"][0], {"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
    assert kernels.cache_key(parts, "r") == base
    assert kernels.cache_key(dict(BODY, temperature=True), "r") != kernels.cache_key(dict(BODY, temperature=1), "r")
    assert kernels.cache_key(dict(BODY, temperature=1.0), "r") == kernels.cache_key(dict(BODY, temperature=1), "r")
    assert kernels.cache_key(dict(BODY, temperature=1), "r") != base  # absent != default


def test_tool_call_arguments_compared_as_json(kernels):
    def body(args):
        return {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}]}]}
    assert kernels.cache_key(body('{"a": 1, "b": 2}'), "r") == kernels.cache_key(body('{"b":2,"a":1}'), "r")
    assert kernels.cache_key(body('{"a": 1}'), "r") != kernels.cache_key(body('{"a": 2}'), "r")
    assert kernels.cache_key(body("not json"), "r") != kernels.cache_key(body("not  json"), "r")


def test_does_not_mutate_input(kernels):
    body = orjson.loads(orjson.dumps(dict(BODY, temperature=1.0, messages=[
        {"role": "user", "content": [{"type": "text", "text": "x"}]}])))
    snapshot = orjson.dumps(body)
    kernels.cache_key(body, "r")
    assert orjson.dumps(body) == snapshot


def test_stable_across_processes_and_hash_seeds(kernels):
    here = kernels.cache_key_hex(BODY, "cheap", "t")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = (f"import importlib; k = importlib.import_module({kernels.__name__!r}); "
            f"print(k.cache_key_hex({BODY!r}, 'cheap', 't'))")
    for seed in ("0", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=root)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == here


def test_known_value(kernels):
    """Pinned: a change here invalidates every shared cache; bump the key prefix on purpose."""
    assert kernels.cache_key_hex({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "r") == PINNED


PINNED = "72da1cf14608b014f61af80a2b5e64fd"
