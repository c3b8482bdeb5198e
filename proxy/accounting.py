"""What a served request cost: which price applies to a deployment, and usage x that price.

The price of a deployment, first match wins:

1. its own ``price:`` in the config's ``models[]`` entry;
2. the catalog entry for its provider and upstream model (``Catalog.find``: exact id, then
   the id without a date suffix);
3. the catalog entry named like its public model name (so a user catalog or an override can
   price an alias such as ``smart`` or a custom model).

No match leaves the request *unpriced*: ``rec.cost_usd`` stays None (the ledger stores NULL,
no ``x-faregate-cost-usd`` header) — never an error. The catalog may be a live
``CatalogWatcher``: lookups are cached per deployment and the cache is dropped whenever the
watcher swaps in a new catalog, so a changed catalog file changes prices without a restart.

Usage comes from the provider. When it sent none (a stream without a usage chunk, a local
server), tokens are counted here — the prompt from the request, the completion from the text
the model wrote — and the record is marked ``usage_estimated``.
"""
from __future__ import annotations

import logging
from typing import Any

from adapters.base import Deployment

from ._fast import count_chat_tokens, count_text_tokens
from .catalog import Catalog, CatalogEntry
from .config import ModelPriceConfig
from .cost import cost_usd
from .record import RequestRecord
from .usage import usage_from_counts

__all__ = ["Pricing", "account", "estimated_usage", "count_prompt_tokens", "format_usd"]

log = logging.getLogger("faregate")


def count_prompt_tokens(body: dict) -> int:
    """Prompt tokens of a chat request (``_fast.count_chat_tokens``) or of an embeddings
    request's input."""
    if isinstance(body.get("messages"), list):
        try:
            return count_chat_tokens(body)
        except Exception:  # an odd message shape must not fail a served request
            log.warning("could not count the prompt tokens of a request", exc_info=True)
            return 0
    inp = body.get("input")
    if isinstance(inp, str):
        return count_text_tokens(inp)
    if isinstance(inp, list):
        return sum(count_text_tokens(x) for x in inp if isinstance(x, str))
    return 0


def estimated_usage(body: dict, completion_text: str) -> dict:
    """OpenAI-shaped usage counted by the gateway."""
    return usage_from_counts(count_prompt_tokens(body),
                             count_text_tokens(completion_text) if completion_text else 0)


def _entry_from_config(dep: Deployment, p: ModelPriceConfig) -> CatalogEntry:
    return CatalogEntry(provider=dep.provider or "custom", model=dep.model or dep.name,
                        input=p.input, output=p.output, cached_input=p.cached_input,
                        cache_write=p.cache_write, context_window=1, max_output=0,
                        name=dep.name, price_source="config")


class Pricing:
    """Deployment -> CatalogEntry (or None), cached per deployment and per catalog version.

    ``catalog`` is a Catalog or anything with a ``.catalog`` attribute holding the live one
    (a CatalogWatcher). ``fixed`` maps ``id(deployment)`` to its config ``price:``."""

    def __init__(self, catalog: Any, fixed: dict[int, ModelPriceConfig] | None = None,
                 deployments: list[Deployment] | None = None):
        self._source = catalog
        self._live = not isinstance(catalog, Catalog)
        self._fixed: dict[int, CatalogEntry] = {}
        for dep in deployments or ():
            p = (fixed or {}).get(id(dep))
            if p is not None:
                self._fixed[id(dep)] = _entry_from_config(dep, p)
        self._deps = list(deployments or ())  # keeps their ids valid while cached by id
        self._known = {id(d) for d in self._deps}
        self._cat: Catalog | None = None
        self._cache: dict[int, CatalogEntry | None] = {}

    @property
    def catalog(self) -> Catalog:
        return self._source.catalog if self._live else self._source

    def price(self, dep: Deployment) -> CatalogEntry | None:
        cat = self._source.catalog if self._live else self._source
        if cat is not self._cat:
            self._cache = {}
            self._cat = cat
        key = id(dep)
        try:
            return self._cache[key]
        except KeyError:
            pass
        entry = self._fixed.get(key)
        if entry is None:
            entry = cat.find(dep.provider, dep.model) or cat.get(dep.name)
        if key in self._known:  # only the app's own deployments: another's id may be reused
            self._cache[key] = entry
        return entry


def account(rec: RequestRecord, usage: dict | None, price: CatalogEntry | None, *,
            estimated: bool = False) -> float | None:
    """Records usage and cost on `rec`; returns the cost (None when unpriced)."""
    if usage:
        rec.set_usage(usage)
    if estimated:
        rec.usage_estimated = True
    if price is None:
        rec.cost_usd = None
        return None
    cost = cost_usd(usage, price, usage_estimated=estimated).total_usd
    rec.cost_usd = cost
    return cost


def format_usd(value: float) -> str:
    """A cost header value: plain decimal, up to 9 places, no exponent ("0.00042")."""
    s = f"{value:.9f}".rstrip("0").rstrip(".")
    return s or "0"
