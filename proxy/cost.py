"""Per-request cost: OpenAI-shaped usage x a catalog entry's prices -> USD.

Input is usage in OpenAI semantics (see :mod:`proxy.usage`, which normalises every
provider into it)::

    uncached input = prompt_tokens - cached_tokens - cache_write_tokens   @ input
    cached input   = prompt_tokens_details.cached_tokens                   @ cached_input (null -> input)
    cache writes   = prompt_tokens_details.cache_write_tokens              @ cache_write  (null -> input)
                     (1-hour writes, cache_write_1h_tokens ⊂ writes,       @ cache_write_1h (null -> cache_write))
    output         = completion_tokens (reasoning tokens included)         @ output
    batch          = every part x (1 - batch_discount)
    long context   = when prompt_tokens > long_context.threshold, that block's rates for all parts

Arithmetic is done at full float precision; each reported figure is rounded to 1e-9 USD
(``ROUND_DIGITS``) only at the end. Prices are USD per 1M tokens.
"""
from __future__ import annotations

from typing import Any, Mapping

import msgspec

from .catalog import CatalogEntry
from .usage import _n

__all__ = ["CostBreakdown", "cost_usd", "estimate_cost", "saved_cost", "cache_savings", "ROUND_DIGITS"]

ROUND_DIGITS = 9
_PER = 1_000_000.0


class CostBreakdown(msgspec.Struct, frozen=True, kw_only=True):
    """What one request cost, part by part (USD), and the token counts it was priced on."""
    total_usd: float
    input_usd: float = 0.0          # uncached prompt tokens
    cached_input_usd: float = 0.0   # prompt-cache reads
    cache_write_usd: float = 0.0    # prompt-cache writes
    output_usd: float = 0.0         # completion tokens, reasoning included
    prompt_tokens: int = 0
    uncached_prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    model: str = ""                 # catalog key of the price used
    batch: bool = False
    long_context: bool = False
    estimated: bool = False         # usage was counted by the gateway, not reported by the provider
    priced: bool = True             # False when no catalog price was known (cost 0)

    def __float__(self) -> float:
        return self.total_usd

    def to_dict(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)




def _details(usage: Mapping, key: str) -> Mapping:
    d = usage.get(key)
    return d if isinstance(d, Mapping) else {}


def _r(x: float) -> float:
    return round(x, ROUND_DIGITS) + 0.0  # + 0.0 turns -0.0 into 0.0


def cost_usd(usage: Mapping[str, Any] | None, price: CatalogEntry | None, *, batch: bool = False,
             usage_estimated: bool = False) -> CostBreakdown:
    """Cost of one response. ``usage`` is OpenAI-shaped (cached ⊂ prompt, reasoning ⊂ completion;
    a top-level ``cache_creation_input_tokens`` is accepted as cache writes when the details
    have none). ``price=None`` (model not in the catalog) gives a zero cost with ``priced=False``.
    A truthy ``usage["estimated"]`` marks the result estimated like ``usage_estimated=True``."""
    usage = usage or {}
    estimated = bool(usage_estimated or usage.get("estimated"))
    pd = _details(usage, "prompt_tokens_details")
    cd = _details(usage, "completion_tokens_details")
    prompt = _n(usage.get("prompt_tokens"))
    completion = _n(usage.get("completion_tokens"))
    cached = _n(pd.get("cached_tokens"))
    write = _n(pd.get("cache_write_tokens")) or _n(usage.get("cache_creation_input_tokens"))
    write_1h = min(_n(pd.get("cache_write_1h_tokens")), write)
    reasoning = _n(cd.get("reasoning_tokens"))
    # Reasoning tokens are billed as output. OpenAI semantics put them inside completion_tokens;
    # if a caller passes them beside it (reasoning > completion), bill both.
    if reasoning > completion:
        completion += reasoning
    # Inconsistent input (cache counts larger than the prompt): never bill negative tokens,
    # never drop cache tokens the provider says it billed.
    uncached = prompt - cached - write
    if uncached < 0:
        uncached = 0
        prompt = cached + write

    if price is None:
        return CostBreakdown(total_usd=0.0, prompt_tokens=prompt, uncached_prompt_tokens=uncached,
                             cached_tokens=cached, cache_write_tokens=write, completion_tokens=completion,
                             reasoning_tokens=reasoning, batch=batch, estimated=estimated, priced=False)

    p_in, p_out = price.input, price.output
    p_cached, p_write = price.cached_input, price.cache_write
    p_write_1h = price.cache_write_1h
    lc = price.long_context
    long_ctx = lc is not None and prompt > lc.threshold
    if long_ctx:
        p_in, p_out = lc.input, lc.output
        p_cached, p_write = lc.cached_input, lc.cache_write
        # scale a 1h write price by the same factor as the input price, when there is one
        p_write_1h = None if p_write_1h is None or not price.input else p_write_1h * lc.input / price.input
    if p_cached is None:
        p_cached = p_in
    if p_write is None:
        p_write = p_in
    if p_write_1h is None:
        p_write_1h = p_write

    mult = (1.0 - price.batch_discount) if batch else 1.0
    input_usd = uncached * p_in / _PER * mult
    cached_usd = cached * p_cached / _PER * mult
    write_usd = ((write - write_1h) * p_write + write_1h * p_write_1h) / _PER * mult
    output_usd = completion * p_out / _PER * mult
    total = input_usd + cached_usd + write_usd + output_usd
    return CostBreakdown(
        total_usd=_r(total), input_usd=_r(input_usd), cached_input_usd=_r(cached_usd),
        cache_write_usd=_r(write_usd), output_usd=_r(output_usd),
        prompt_tokens=prompt, uncached_prompt_tokens=uncached, cached_tokens=cached,
        cache_write_tokens=write, completion_tokens=completion, reasoning_tokens=reasoning,
        model=price.name, batch=batch, long_context=long_ctx, estimated=estimated, priced=True)


def estimate_cost(prompt_tokens: int, max_output_tokens: int, price: CatalogEntry, *,
                  cached_tokens: int = 0, batch: bool = False) -> float:
    """Upper-bound cost before sending, for routing ceilings and budget checks: the prompt at
    the input price (``cached_tokens`` of it at the cached price, if the caller expects a
    cache hit) plus ``max_output_tokens`` at the output price."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": max_output_tokens,
             "prompt_tokens_details": {"cached_tokens": min(_n(cached_tokens), _n(prompt_tokens))}}
    return cost_usd(usage, price, batch=batch).total_usd


def saved_cost(usage: Mapping[str, Any] | None, price: CatalogEntry | None, *, batch: bool = False) -> float:
    """What a response served from the gateway's cache would have cost upstream: the cost of
    the stored response's usage at the price of the deployment that produced it (0 if unknown)."""
    return cost_usd(usage, price, batch=batch).total_usd


def cache_savings(usage: Mapping[str, Any] | None, price: CatalogEntry | None, *, batch: bool = False) -> float:
    """Money the *provider's* prompt cache saved on this response: what the cached tokens
    would have cost at the full input price minus what they cost at the cached price.
    (Cache writes cost extra on Anthropic; that premium is subtracted, so this can be negative.)"""
    if price is None or not usage:
        return 0.0
    actual = cost_usd(usage, price, batch=batch).total_usd
    plain = dict(usage)
    plain["prompt_tokens_details"] = {"cached_tokens": 0}
    plain.pop("cache_creation_input_tokens", None)
    return _r(cost_usd(plain, price, batch=batch).total_usd - actual)
