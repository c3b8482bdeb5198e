"""Normalise every provider's token usage into one OpenAI-shaped dict.

The gateway prices, logs and returns usage in OpenAI semantics, where cache and reasoning
counts are *subsets* of the totals::

    {"prompt_tokens": P,            # every input token, cached and cache-written included
     "completion_tokens": C,        # every output token, reasoning/thinking included
     "total_tokens": P + C,
     "prompt_tokens_details": {"cached_tokens": R,          # read from the prompt cache (⊂ P)
                               "cache_write_tokens": W},    # written to the cache (⊂ P; Anthropic)
     "completion_tokens_details": {"reasoning_tokens": T}}  # ⊂ C

``prompt_tokens_details.cache_write_1h_tokens`` (⊂ W) is added when Anthropic reports
1-hour cache writes. Unknown extra fields of OpenAI-shaped usage (``audio_tokens``...) are
kept. All functions here are pure: no I/O, input never modified.

Provider mapping (reference/provider-wire-formats.md §4):

============  =======================================  ====================  ======================
format        prompt_tokens                            cached_tokens         completion / reasoning
============  =======================================  ====================  ======================
openai        prompt_tokens                            details.cached        completion / details
deepseek      prompt_tokens (hit + miss)               prompt_cache_hit      completion / details
anthropic     input + cache_read + cache_creation      cache_read            output (incl. thinking)
gemini        promptTokenCount + toolUsePrompt         cachedContent         candidates + thoughts / thoughts
============  =======================================  ====================  ======================
"""
from __future__ import annotations

from typing import Any, Mapping

__all__ = ["normalize_usage", "usage_from_counts", "merge_usage", "FORMATS"]

FORMATS = ("openai", "deepseek", "anthropic", "gemini")


def _n(v: Any) -> int:
    """A token count as a non-negative int; None/garbage -> 0."""
    if v is None or isinstance(v, bool):
        return 0
    try:
        n = int(v)
    except (TypeError, ValueError):
        return 0
    return n if n > 0 else 0


def _g(d: Mapping | None, *keys: str) -> Any:
    """First present key (camelCase or snake_case spellings) of a mapping."""
    if not d:
        return None
    for k in keys:
        v = d.get(k)
        if v is not None:
            return v
    return None


def _build(prompt: int, completion: int, cached: int = 0, cache_write: int = 0, reasoning: int = 0,
           total: int | None = None, extra_prompt: Mapping | None = None,
           extra_completion: Mapping | None = None, cache_write_1h: int = 0) -> dict:
    pd: dict[str, Any] = dict(extra_prompt or {})
    pd["cached_tokens"] = cached
    if cache_write or "cache_write_tokens" in pd:
        pd["cache_write_tokens"] = cache_write
    if cache_write_1h:
        pd["cache_write_1h_tokens"] = cache_write_1h
    cd: dict[str, Any] = dict(extra_completion or {})
    cd["reasoning_tokens"] = reasoning
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if total is not None and total >= prompt + completion else prompt + completion,
        "prompt_tokens_details": pd,
        "completion_tokens_details": cd,
    }


def _openai(raw: Mapping) -> dict:
    prompt = _n(raw.get("prompt_tokens"))
    completion = _n(raw.get("completion_tokens"))
    pd = raw.get("prompt_tokens_details") or {}
    cd = raw.get("completion_tokens_details") or {}
    if not isinstance(pd, Mapping):
        pd = {}
    if not isinstance(cd, Mapping):
        cd = {}
    cached = _n(pd.get("cached_tokens"))
    if not cached:
        # DeepSeek-style top-level counter, found on some compatible servers too
        cached = _n(raw.get("prompt_cache_hit_tokens"))
    cache_write = _n(_g(pd, "cache_write_tokens", "cache_creation_tokens")) or _n(raw.get("cache_creation_input_tokens"))
    reasoning = _n(cd.get("reasoning_tokens"))
    total_raw = raw.get("total_tokens")
    total = _n(total_raw) if total_raw is not None else None
    # Some OpenAI-compatible providers (xAI) count reasoning tokens *beside* completion_tokens:
    # total = prompt + completion + reasoning. Fold them in so reasoning ⊂ completion holds.
    # With no total to tell, reasoning larger than completion can only mean the same thing.
    if reasoning and ((total is not None and total == prompt + completion + reasoning) or reasoning > completion):
        completion += reasoning
    # cache counts can never exceed the prompt they are part of
    cached = min(cached, prompt)
    cache_write = min(cache_write, prompt - cached)
    reasoning = min(reasoning, completion)
    extra_p = {k: v for k, v in pd.items() if k not in ("cached_tokens", "cache_write_tokens", "cache_creation_tokens")}
    extra_c = {k: v for k, v in cd.items() if k != "reasoning_tokens"}
    return _build(prompt, completion, cached, cache_write, reasoning, total, extra_p, extra_c)


def _deepseek(raw: Mapping) -> dict:
    out = _openai(raw)
    hit = raw.get("prompt_cache_hit_tokens")
    if hit is not None:
        out["prompt_tokens_details"]["cached_tokens"] = min(_n(hit), out["prompt_tokens"])
    if not out["prompt_tokens"] and (raw.get("prompt_cache_miss_tokens") is not None or hit is not None):
        out["prompt_tokens"] = _n(hit) + _n(raw.get("prompt_cache_miss_tokens"))
        out["total_tokens"] = max(out["total_tokens"], out["prompt_tokens"] + out["completion_tokens"])
    return out


def _anthropic(raw: Mapping) -> dict:
    inp = _n(raw.get("input_tokens"))
    read = _n(raw.get("cache_read_input_tokens"))
    write = _n(raw.get("cache_creation_input_tokens"))
    cc = raw.get("cache_creation")
    write_1h = 0
    if isinstance(cc, Mapping):
        w5 = _n(cc.get("ephemeral_5m_input_tokens"))
        write_1h = _n(cc.get("ephemeral_1h_input_tokens"))
        if not write:
            write = w5 + write_1h
        write_1h = min(write_1h, write)
    out_tokens = _n(raw.get("output_tokens"))  # includes thinking; Anthropic gives no split
    return _build(inp + read + write, out_tokens, read, write, 0, cache_write_1h=write_1h)


def _gemini(raw: Mapping) -> dict:
    prompt = _n(_g(raw, "promptTokenCount", "prompt_token_count"))
    tool_prompt = _n(_g(raw, "toolUsePromptTokenCount", "tool_use_prompt_token_count"))
    cached = _n(_g(raw, "cachedContentTokenCount", "cached_content_token_count"))
    cand = _n(_g(raw, "candidatesTokenCount", "candidates_token_count"))
    thoughts = _n(_g(raw, "thoughtsTokenCount", "thoughts_token_count"))
    total_raw = _g(raw, "totalTokenCount", "total_token_count")
    prompt_all = prompt + tool_prompt
    return _build(prompt_all, cand + thoughts, min(cached, prompt_all), 0, thoughts,
                  _n(total_raw) if total_raw is not None else None)


_NORMALISERS = {"openai": _openai, "deepseek": _deepseek, "anthropic": _anthropic, "gemini": _gemini}


def normalize_usage(provider_format: str, raw: Mapping[str, Any] | None) -> dict | None:
    """OpenAI-shaped usage from a provider's raw usage object.

    ``provider_format`` is the wire format (``openai``, ``anthropic``, ``gemini``) or a
    provider name; ``deepseek`` reads ``prompt_cache_hit_tokens``; any other name (mistral,
    groq, together, xai, qwen, ollama, vllm...) is treated as OpenAI-compatible. Returns None
    when ``raw`` is None/empty (the provider sent no usage: the caller counts an estimate)."""
    if not raw or not isinstance(raw, Mapping):
        return None
    fn = _NORMALISERS.get((provider_format or "openai").lower(), _openai)
    return fn(raw)


def usage_from_counts(prompt_tokens: int, completion_tokens: int, *, cached_tokens: int = 0,
                      reasoning_tokens: int = 0) -> dict:
    """OpenAI-shaped usage from counted (estimated) token numbers."""
    p, c = _n(prompt_tokens), _n(completion_tokens)
    return _build(p, c, min(_n(cached_tokens), p), 0, min(_n(reasoning_tokens), c))


def merge_usage(base: Mapping[str, Any] | None, update: Mapping[str, Any] | None) -> dict:
    """Overlay the non-null fields of ``update`` on ``base`` (raw, provider-shaped dicts),
    nested objects merged. For streams that report usage in pieces, e.g. Anthropic's
    ``message_start`` (input and cache counts) then ``message_delta`` (final output_tokens).
    Gemini and OpenAI stream usage is cumulative: just keep the last one."""
    out: dict[str, Any] = dict(base or {})
    for k, v in (update or {}).items():
        if v is None:
            continue
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_usage(out[k], v)
        else:
            out[k] = v
    return out
