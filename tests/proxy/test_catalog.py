"""Price catalog: packaged manifest, overrides, validation errors, hot reload."""
from __future__ import annotations

import asyncio
import json
import os
import re

import pytest

from proxy.catalog import (Catalog, CatalogEntry, CatalogError, CatalogWatcher, load_catalog,
                           merge_catalog_dicts, parse_catalog)

EXPECTED_PROVIDERS = {"openai", "anthropic", "gemini", "deepseek", "mistral", "qwen", "groq",
                      "together", "fireworks", "xai"}


# ---------------------------------------------------------------- packaged catalog

@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def test_packaged_catalog_size_and_providers(cat):
    assert len(cat) >= 45
    assert EXPECTED_PROVIDERS <= set(cat.providers)
    assert len(cat.providers) >= 10
    assert cat.tier_method and "5" in cat.tier_method


def test_every_entry_has_date_source_and_tier_reason(cat):
    for key, e in cat.items():
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", e.price_date), key
        assert e.price_source.startswith("https://"), key
        assert e.tier_reason, key
        assert 1 <= e.tier <= 5, key
        assert e.name == key


def test_packaged_entries_are_sane(cat):
    for key, e in cat.items():
        assert e.context_window > 0 and e.max_output <= e.context_window, key
        if e.cached_input is not None:
            assert e.cached_input <= e.input, key
        if e.capabilities.embeddings:
            assert e.output == 0 and e.max_output == 0, key
        else:
            assert e.output > 0 and e.max_output > 0, key


def test_packaged_catalog_has_embeddings_and_three_tiers_of_price(cat):
    emb = [e for e in cat.values() if e.capabilities.embeddings]
    assert {"text-embedding-3-small", "text-embedding-3-large", "gemini-embedding-001"} <= {e.name for e in emb}
    # same open model on several hosts, under provider-prefixed keys
    for key in ("groq/llama-3.3-70b-versatile", "together/llama-3.3-70b", "fireworks/llama-3.3-70b"):
        assert key in cat


def test_known_prices(cat):
    e = cat["gpt-4o-mini"]
    assert (e.provider, e.input, e.cached_input, e.output, e.batch_discount) == ("openai", 0.15, 0.075, 0.60, 0.5)
    s = cat["claude-sonnet-4-5"]
    assert (s.input, s.cached_input, s.cache_write, s.output) == (3.0, 0.3, 3.75, 15.0)
    assert cat["deepseek-chat"].batch_discount == 0


def test_lookups(cat):
    assert cat.get("nope") is None
    assert "gpt-4o" in cat and "nope" not in cat
    with pytest.raises(KeyError):
        cat["nope"]
    # provider/upstream-model spelling
    assert cat.get("groq/openai/gpt-oss-120b").name == "groq/gpt-oss-120b"
    # a response's dated model id maps back to the catalog entry
    assert cat.find("openai", "gpt-4o-mini-2024-07-18").name == "gpt-4o-mini"
    assert cat.find("anthropic", "claude-sonnet-4-5-20250929").name == "claude-sonnet-4-5"
    assert cat.find("groq", "llama-3.3-70b-versatile").name == "groq/llama-3.3-70b-versatile"
    assert cat.find("openai", "claude-sonnet-4-5") is None
    assert {e.provider for e in cat.by_provider("xai")} == {"xai"}


# ---------------------------------------------------------------- overrides

def test_partial_override_of_existing_model():
    c = load_catalog(overrides={"gpt-4o": {"input": 2.0, "capabilities": {"vision": False}}})
    e = c["gpt-4o"]
    assert e.input == 2.0
    assert e.output == 10.0  # untouched fields kept
    assert e.capabilities.vision is False and e.capabilities.tools is True  # nested merge


def test_override_adds_new_model_and_removes_one():
    new = {"provider": "ollama", "model": "llama3.2:3b", "input": 0, "output": 0,
           "context_window": 131072, "max_output": 8192, "tier": 1,
           "capabilities": {"tools": True}}
    c = load_catalog(overrides={"models": {"local-llama": new, "gpt-4o": None}})
    assert c["local-llama"].provider == "ollama" and c["local-llama"].capabilities.tools
    assert c["local-llama"].capabilities.streaming is True  # default
    assert "gpt-4o" not in c


def test_user_file_extends_then_overrides_win(tmp_path):
    f = tmp_path / "cat.json"
    f.write_text(json.dumps({"models": {"gpt-4o": {"input": 2.0, "cached_input": 0.5},
                                         "mine": {"provider": "vllm", "model": "qwen", "input": 0.1,
                                                  "output": 0.2, "context_window": 32768, "max_output": 4096}}}))
    c = load_catalog(f, overrides={"gpt-4o": {"output": 9.0}})
    assert c["gpt-4o"].input == 2.0 and c["gpt-4o"].output == 9.0 and c["gpt-4o"].cached_input == 0.5
    assert c["mine"].input == 0.1
    assert "claude-sonnet-4-5" in c  # packaged models still there


def test_user_file_can_replace_the_default(tmp_path):
    f = tmp_path / "cat.yaml"
    f.write_text("extends_default: false\nmodels:\n  only:\n    provider: openai\n    model: gpt-4o\n"
                 "    input: 1\n    output: 2\n    context_window: 1000\n    max_output: 100\n")
    c = load_catalog(f)
    assert list(c) == ["only"] and c["only"].input == 1.0


def test_merge_does_not_mutate_inputs():
    base = {"a": {"input": 1, "capabilities": {"tools": True}}}
    merged = merge_catalog_dicts(base, {"a": {"capabilities": {"vision": True}}})
    assert merged["a"]["capabilities"] == {"tools": True, "vision": True}
    assert base == {"a": {"input": 1, "capabilities": {"tools": True}}}


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("override, field, words", [
    ({"input": "cheap"}, "input", 'expected a number, got "cheap"'),
    ({"input": -1}, "input", "expected a number >= 0"),
    ({"output": True}, "output", "expected a number"),
    ({"cached_input": 5.0}, "cached_input", "above the input price"),
    ({"tier": 7}, "tier", "<= 5"),
    ({"tier": 0}, "tier", ">= 1"),
    ({"context_window": 0}, "context_window", ">= 1"),
    ({"max_output": 10**7}, "max_output", "exceeds context_window"),
    ({"batch_discount": 1.5}, "batch_discount", "< 1"),
    ({"price_date": "last week"}, "price_date", "YYYY-MM-DD"),
    ({"capabilities": {"tools": "yes"}}, "capabilities.tools", "true or false"),
    ({"capabilities": {"telepathy": True}}, "capabilities.telepathy", "unknown field"),
    ({"inptu": 1.0}, "inptu", "unknown field"),
    ({"long_context": {"threshold": 1000}}, "long_context.input", "required field is missing"),
])
def test_invalid_field_rejected_naming_model_and_field(override, field, words):
    with pytest.raises(CatalogError) as ei:
        load_catalog(overrides={"gpt-4o": override})
    msg = str(ei.value)
    assert f"catalog model 'gpt-4o': field '{field}'" in msg
    assert words in msg


def test_new_model_missing_required_field():
    with pytest.raises(CatalogError, match=r"catalog model 'mine': field 'context_window': required field is missing"):
        load_catalog(overrides={"mine": {"provider": "x", "model": "y", "input": 1, "output": 1, "max_output": 1}})


def test_entry_not_an_object():
    with pytest.raises(CatalogError, match=r"catalog model 'gpt-4o': expected an object"):
        load_catalog(overrides={"gpt-4o": 3})


def test_all_errors_reported_together():
    with pytest.raises(CatalogError) as ei:
        load_catalog(overrides={"gpt-4o": {"input": "x"}, "o3": {"tier": 9}})
    assert len(ei.value.errors) == 2
    assert "'gpt-4o'" in str(ei.value) and "'o3'" in str(ei.value)


def test_bad_files(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")
    f = tmp_path / "bad.json"
    f.write_text("{not json")
    with pytest.raises(CatalogError, match="cannot parse"):
        load_catalog(f)
    f.write_text('{"models": []}')
    with pytest.raises(CatalogError, match="'models' must be an object"):
        load_catalog(f)
    with pytest.raises(CatalogError):
        parse_catalog([1, 2])


def test_entries_are_immutable(cat):
    with pytest.raises(AttributeError):
        cat["gpt-4o"].input = 0  # type: ignore[misc]
    assert isinstance(cat["gpt-4o"], CatalogEntry)


# ---------------------------------------------------------------- hot reload

def _write(path, models: dict, bump: int) -> None:
    path.write_text(json.dumps({"models": models}))
    # make the change visible even on filesystems with coarse mtime
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))


async def _wait_for(pred, timeout=3.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_watcher_reloads_on_file_change(tmp_path):
    f = tmp_path / "catalog.json"
    _write(f, {"gpt-4o": {"input": 3.0}}, 0)
    seen = []
    w = CatalogWatcher(f, interval=0.05, on_reload=seen.append)
    assert w.get("gpt-4o").input == 3.0
    first = w.catalog
    w.start()
    try:
        _write(f, {"gpt-4o": {"input": 3.5}, "extra": {"provider": "vllm", "model": "m", "input": 0.0,
                                                       "output": 0.0, "context_window": 8, "max_output": 8}}, 1)
        assert await _wait_for(lambda: w.catalog.get("gpt-4o").input == 3.5)
        assert "extra" in w.catalog and w.reloads == 1
        assert seen and seen[-1] is w.catalog
        assert first.get("gpt-4o").input == 3.0  # readers holding the old reference are unaffected

        # an invalid rewrite is rejected: the previous catalog stays
        _write(f, {"gpt-4o": {"input": "cheap"}}, 2)
        assert await _wait_for(lambda: w.errors == 1)
        assert w.catalog.get("gpt-4o").input == 3.5
        assert "catalog model 'gpt-4o': field 'input'" in w.last_error

        # broken JSON too
        f.write_text("{oops")
        os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 3_000_000_000))
        assert await _wait_for(lambda: w.errors == 2)
        assert w.catalog.get("gpt-4o").input == 3.5

        # and a fixed file is picked up again
        _write(f, {"gpt-4o": {"input": 4.25}}, 4)
        assert await _wait_for(lambda: w.catalog.get("gpt-4o").input == 4.25)
        assert w.last_error is None and w.reloads == 2
    finally:
        await w.stop()


async def test_watcher_keeps_catalog_when_file_deleted(tmp_path):
    f = tmp_path / "catalog.json"
    _write(f, {"gpt-4o": {"input": 3.0}}, 0)
    w = CatalogWatcher(f, interval=0.02)
    w.start()
    try:
        f.unlink()
        await asyncio.sleep(0.1)
        assert w.catalog.get("gpt-4o").input == 3.0 and w.errors == 0
    finally:
        await w.stop()


def test_watcher_check_is_synchronous_and_noop_without_change(tmp_path):
    f = tmp_path / "catalog.json"
    _write(f, {"o3": {"output": 7.0}}, 0)
    w = CatalogWatcher(f, overrides={"o3": {"input": 1.0}})
    assert w.check() is False
    _write(f, {"o3": {"output": 6.0}}, 1)
    assert w.check() is True
    assert w.catalog["o3"].output == 6.0 and w.catalog["o3"].input == 1.0  # overrides re-applied


def test_watcher_initial_invalid_file_raises(tmp_path):
    f = tmp_path / "catalog.json"
    _write(f, {"gpt-4o": {"tier": 6}}, 0)
    with pytest.raises(CatalogError, match="field 'tier'"):
        CatalogWatcher(f)
