"""Cost arithmetic per provider usage format, with hand-computed expected figures.

Prices used (USD per 1M tokens), from the packaged catalog:
  gpt-4o-mini       in 0.15  cached 0.075  out 0.60   batch 50%
  gpt-5             in 1.25  cached 0.125  out 10.00  batch 50%
  claude-sonnet-4-5 in 3.00  read 0.30  write 3.75  write-1h 6.00  out 15.00  batch 50%
  gemini-2.5-flash  in 0.30  cached 0.03   out 2.50   batch 50%
  gemini-2.5-pro    in 1.25  cached 0.125  out 10.00; above 200K prompt: 2.50 / 0.25 / 15.00
  deepseek-chat     miss 0.28  hit 0.028  out 0.42   no batch
"""
from __future__ import annotations

import pytest

from proxy.catalog import CatalogEntry, Capabilities, load_catalog
from proxy.cost import CostBreakdown, cache_savings, cost_usd, estimate_cost, saved_cost
from proxy.usage import merge_usage, normalize_usage, usage_from_counts


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def approx(x):
    return pytest.approx(x, abs=1e-12, rel=1e-9)


# ---------------------------------------------------------------- OpenAI

def test_openai_cached_tokens(cat):
    raw = {"prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
           "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}
    c = cost_usd(normalize_usage("openai", raw), cat["gpt-4o-mini"])
    # 86 uncached * 0.15 + 1920 * 0.075 + 300 * 0.60 = 12.9 + 144 + 180 = 336.9 per 1M
    assert c.uncached_prompt_tokens == 86 and c.cached_tokens == 1920
    assert c.input_usd == approx(0.0000129)
    assert c.cached_input_usd == approx(0.000144)
    assert c.output_usd == approx(0.00018)
    assert c.total_usd == approx(0.0003369)
    assert c.model == "gpt-4o-mini" and c.priced and not c.estimated and not c.batch


def test_openai_reasoning_tokens_billed_as_output(cat):
    raw = {"prompt_tokens": 1000, "completion_tokens": 2500, "total_tokens": 3500,
           "prompt_tokens_details": {"cached_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 2000}}
    c = cost_usd(normalize_usage("openai", raw), cat["gpt-5"])
    # 1000 * 1.25 + 2500 * 10 = 1250 + 25000 = 26250 per 1M (reasoning already inside completion)
    assert c.reasoning_tokens == 2000 and c.completion_tokens == 2500
    assert c.total_usd == approx(0.02625)


def test_reasoning_reported_beside_completion_is_folded_in(cat):
    # xAI-style: total = prompt + completion + reasoning
    raw = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 450,
           "completion_tokens_details": {"reasoning_tokens": 300}}
    u = normalize_usage("xai", raw)
    assert u["completion_tokens"] == 350 and u["completion_tokens_details"]["reasoning_tokens"] == 300
    c = cost_usd(u, cat["grok-3-mini"])
    # 100 * 0.30 + 350 * 0.50 = 30 + 175 = 205 per 1M
    assert c.total_usd == approx(0.000205)


def test_openai_cache_write_tokens_extra_field():
    price = CatalogEntry(provider="openai", model="x", name="x", input=2.0, output=8.0, cached_input=0.2,
                         cache_write=2.5, context_window=100000, max_output=1000)
    u = {"prompt_tokens": 10000, "completion_tokens": 100,
         "prompt_tokens_details": {"cached_tokens": 4000, "cache_write_tokens": 5000}}
    c = cost_usd(u, price)
    # 1000*2 + 4000*0.2 + 5000*2.5 + 100*8 = 2000 + 800 + 12500 + 800 = 16100 per 1M
    assert c.uncached_prompt_tokens == 1000
    assert c.cache_write_usd == approx(0.0125)
    assert c.total_usd == approx(0.0161)


def test_top_level_cache_creation_input_tokens_accepted():
    price = CatalogEntry(provider="p", model="m", name="m", input=1.0, output=1.0, cache_write=2.0,
                         context_window=1000, max_output=10)
    c = cost_usd({"prompt_tokens": 300, "completion_tokens": 0, "cache_creation_input_tokens": 100}, price)
    # 200*1 + 100*2 = 400 per 1M
    assert c.cache_write_tokens == 100 and c.total_usd == approx(0.0004)


# ---------------------------------------------------------------- Anthropic

def test_anthropic_cache_read_and_write(cat):
    raw = {"input_tokens": 21, "output_tokens": 48, "cache_creation_input_tokens": 1000,
           "cache_read_input_tokens": 1800,
           "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 0}}
    u = normalize_usage("anthropic", raw)
    assert u["prompt_tokens"] == 21 + 1800 + 1000
    assert u["prompt_tokens_details"]["cached_tokens"] == 1800
    assert u["prompt_tokens_details"]["cache_write_tokens"] == 1000
    assert u["total_tokens"] == 2821 + 48
    c = cost_usd(u, cat["claude-sonnet-4-5"])
    # 21*3 + 1800*0.30 + 1000*3.75 + 48*15 = 63 + 540 + 3750 + 720 = 5073 per 1M
    assert c.input_usd == approx(0.000063)
    assert c.cached_input_usd == approx(0.00054)
    assert c.cache_write_usd == approx(0.00375)
    assert c.output_usd == approx(0.00072)
    assert c.total_usd == approx(0.005073)


def test_anthropic_one_hour_cache_writes(cat):
    raw = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 0,
           "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000}}
    u = normalize_usage("anthropic", raw)
    assert u["prompt_tokens_details"]["cache_write_1h_tokens"] == 2000
    c = cost_usd(u, cat["claude-sonnet-4-5"])
    # 1000*3.75 + 2000*6.00 = 3750 + 12000 = 15750 per 1M
    assert c.total_usd == approx(0.01575)


def test_anthropic_batch_discount_applies_to_cache_too(cat):
    raw = {"input_tokens": 21, "output_tokens": 48, "cache_creation_input_tokens": 1000,
           "cache_read_input_tokens": 1800}
    c = cost_usd(normalize_usage("anthropic", raw), cat["claude-sonnet-4-5"], batch=True)
    assert c.batch
    assert c.total_usd == approx(0.005073 / 2)


def test_anthropic_stream_usage_merged(cat):
    start = {"input_tokens": 500, "output_tokens": 1, "cache_creation_input_tokens": 0,
             "cache_read_input_tokens": 2000}
    delta = {"output_tokens": 120}
    u = normalize_usage("anthropic", merge_usage(start, delta))
    assert u["prompt_tokens"] == 2500 and u["completion_tokens"] == 120
    c = cost_usd(u, cat["claude-haiku-4-5"])
    # 500*1 + 2000*0.10 + 120*5 = 500 + 200 + 600 = 1300 per 1M
    assert c.total_usd == approx(0.0013)


# ---------------------------------------------------------------- Gemini

def test_gemini_thoughts_are_output_and_reasoning(cat):
    raw = {"promptTokenCount": 83, "cachedContentTokenCount": 0, "candidatesTokenCount": 14,
           "thoughtsTokenCount": 104, "totalTokenCount": 201}
    u = normalize_usage("gemini", raw)
    assert u["prompt_tokens"] == 83 and u["completion_tokens"] == 118
    assert u["completion_tokens_details"]["reasoning_tokens"] == 104 and u["total_tokens"] == 201
    c = cost_usd(u, cat["gemini-2.5-flash"])
    # 83*0.30 + 118*2.50 = 24.9 + 295 = 319.9 per 1M
    assert c.total_usd == approx(0.0003199)


def test_gemini_cached_content_and_snake_case(cat):
    raw = {"prompt_token_count": 10000, "cached_content_token_count": 8000, "candidates_token_count": 200,
           "tool_use_prompt_token_count": 500}
    u = normalize_usage("gemini", raw)
    assert u["prompt_tokens"] == 10500 and u["prompt_tokens_details"]["cached_tokens"] == 8000
    c = cost_usd(u, cat["gemini-2.5-flash"])
    # 2500*0.30 + 8000*0.03 + 200*2.50 = 750 + 240 + 500 = 1490 per 1M
    assert c.total_usd == approx(0.00149)


def test_gemini_long_context_rates(cat):
    u = normalize_usage("gemini", {"promptTokenCount": 300000, "cachedContentTokenCount": 100000,
                                   "candidatesTokenCount": 1000})
    c = cost_usd(u, cat["gemini-2.5-pro"])
    # above 200K: 200000*2.50 + 100000*0.25 + 1000*15 = 500000 + 25000 + 15000 = 540000 per 1M
    assert c.long_context
    assert c.total_usd == approx(0.54)
    short = cost_usd(normalize_usage("gemini", {"promptTokenCount": 200000, "candidatesTokenCount": 1000}),
                     cat["gemini-2.5-pro"])
    # exactly at the threshold: base rates, 200000*1.25 + 1000*10 = 260000 per 1M
    assert not short.long_context and short.total_usd == approx(0.26)


# ---------------------------------------------------------------- DeepSeek

def test_deepseek_cache_hit_tokens(cat):
    raw = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
           "prompt_cache_hit_tokens": 800, "prompt_cache_miss_tokens": 200}
    u = normalize_usage("deepseek", raw)
    assert u["prompt_tokens_details"]["cached_tokens"] == 800
    c = cost_usd(u, cat["deepseek-chat"])
    # 200*0.28 + 800*0.028 + 200*0.42 = 56 + 22.4 + 84 = 162.4 per 1M
    assert c.total_usd == approx(0.0001624)


def test_deepseek_no_batch_discount(cat):
    u = {"prompt_tokens": 1000, "completion_tokens": 0}
    assert cost_usd(u, cat["deepseek-chat"], batch=True).total_usd == approx(0.00028)


# ---------------------------------------------------------------- batch, estimate, flags

def test_batch_discount_openai(cat):
    u = {"prompt_tokens": 1_000_000, "completion_tokens": 1_000_000}
    assert cost_usd(u, cat["gpt-4o-mini"]).total_usd == approx(0.75)
    assert cost_usd(u, cat["gpt-4o-mini"], batch=True).total_usd == approx(0.375)


def test_cached_input_null_falls_back_to_input():
    price = CatalogEntry(provider="p", model="m", name="m", input=1.0, output=2.0, context_window=1000, max_output=10)
    u = {"prompt_tokens": 1000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 600}}
    c = cost_usd(u, price)
    assert c.total_usd == approx((1000 * 1.0 + 10 * 2.0) / 1e6)


def test_estimated_flag_passes_through(cat):
    u = usage_from_counts(120, 30)
    c = cost_usd(u, cat["gpt-4o-mini"], usage_estimated=True)
    assert c.estimated
    # 120*0.15 + 30*0.60 = 18 + 18 = 36 per 1M
    assert c.total_usd == approx(0.000036)
    assert cost_usd({**u, "estimated": True}, cat["gpt-4o-mini"]).estimated
    assert not cost_usd(u, cat["gpt-4o-mini"]).estimated


def test_unknown_price_is_zero_and_unpriced():
    c = cost_usd({"prompt_tokens": 10, "completion_tokens": 5}, None)
    assert c.total_usd == 0.0 and not c.priced and c.prompt_tokens == 10


def test_no_usage_is_zero(cat):
    assert normalize_usage("openai", None) is None
    assert cost_usd(None, cat["gpt-4o"]).total_usd == 0.0


def test_inconsistent_cache_counts_never_negative(cat):
    # cache counts larger than the prompt (a provider reporting Anthropic-style prompt_tokens)
    u = {"prompt_tokens": 10, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 100}}
    c = cost_usd(u, cat["gpt-4o-mini"])
    assert c.uncached_prompt_tokens == 0 and c.input_usd == 0.0
    assert c.total_usd == approx(100 * 0.075 / 1e6)


def test_estimate_cost_is_upper_bound(cat):
    # 1000*1.25 + 500*10 = 6250 per 1M
    assert estimate_cost(1000, 500, cat["gpt-5"]) == approx(0.00625)
    assert estimate_cost(1000, 500, cat["gpt-5"], batch=True) == approx(0.003125)
    # 400 uncached * 1.25 + 600 cached * 0.125 + 500 * 10 = 500 + 75 + 5000 = 5575 per 1M
    assert estimate_cost(1000, 500, cat["gpt-5"], cached_tokens=600) == approx(0.005575)


def test_saved_cost_and_cache_savings(cat):
    u = normalize_usage("openai", {"prompt_tokens": 2006, "completion_tokens": 300,
                                   "prompt_tokens_details": {"cached_tokens": 1920}})
    assert saved_cost(u, cat["gpt-4o-mini"]) == approx(0.0003369)
    assert saved_cost(u, None) == 0.0
    # provider cache saved 1920 * (0.15 - 0.075) = 144 per 1M
    assert cache_savings(u, cat["gpt-4o-mini"]) == approx(0.000144)


def test_rounding_to_nano_dollars(cat):
    c = cost_usd({"prompt_tokens": 1, "completion_tokens": 0}, cat["gpt-5-nano"])
    assert c.total_usd == approx(5e-8)
    c = cost_usd({"prompt_tokens": 3, "completion_tokens": 7}, cat["gpt-4o-mini"])
    assert c.total_usd == round(c.total_usd, 9)
    assert isinstance(c, CostBreakdown) and float(c) == c.total_usd
    assert c.to_dict()["total_usd"] == c.total_usd


def test_breakdown_parts_sum_to_total(cat):
    u = normalize_usage("anthropic", {"input_tokens": 1234, "output_tokens": 567,
                                      "cache_creation_input_tokens": 890, "cache_read_input_tokens": 4321})
    c = cost_usd(u, cat["claude-opus-4-5"])
    parts = c.input_usd + c.cached_input_usd + c.cache_write_usd + c.output_usd
    assert c.total_usd == pytest.approx(parts, abs=2e-9)


# ---------------------------------------------------------------- normaliser details

def test_openai_normaliser_keeps_extra_details_and_fills_missing():
    u = normalize_usage("mistral", {"prompt_tokens": 9, "completion_tokens": 2})
    assert u == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                 "prompt_tokens_details": {"cached_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0}}
    u = normalize_usage("openai", {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                                   "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 3}})
    assert u["prompt_tokens_details"]["audio_tokens"] == 3


def test_normaliser_is_pure():
    raw = {"input_tokens": 1, "output_tokens": 2, "cache_read_input_tokens": 3}
    before = dict(raw)
    normalize_usage("anthropic", raw)
    assert raw == before


def test_cost_for_custom_entry_without_name():
    e = CatalogEntry(provider="p", model="m", input=0.5, output=1.5, context_window=10, max_output=5,
                     capabilities=Capabilities(tools=True))
    assert cost_usd({"prompt_tokens": 2, "completion_tokens": 2}, e).total_usd == approx(4e-6)
