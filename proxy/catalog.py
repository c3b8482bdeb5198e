"""The price catalog: what every model costs and what it can do.

The packaged manifest (``proxy/data/catalog.json``) is the default. A user may extend or
override it with a catalog file of the same shape (JSON, or YAML when the name ends in
``.yaml``/``.yml``) and with per-model overrides from the gateway config; both are merged
*per model* and *per field*, so an override can change just ``input`` of an existing model
or add a whole new one. A model set to ``null`` is removed. A user file with
``"extends_default": false`` replaces the packaged catalog instead of extending it.

Every entry is validated with msgspec plus semantic checks; any problem raises
:class:`CatalogError` whose message names the model key and the field, e.g.::

    catalog model 'gpt-4o': field 'input': Expected `float`, got `str`, got "cheap"

:class:`CatalogWatcher` re-reads a user catalog file when its mtime/size/inode changes
(polled from an asyncio task, default every 2 s), swaps the :class:`Catalog` reference in one
assignment, and keeps the old catalog (logging the error) when the new file is invalid.

Prices are USD per 1M tokens.
"""
from __future__ import annotations

import asyncio
import copy
import importlib.resources
import json
import logging
import os
import re
from typing import Annotated, Any, Callable, Iterator

import msgspec

__all__ = [
    "Capabilities", "LongContextPrice", "CatalogEntry", "ModelPrice", "Catalog", "CatalogError",
    "CatalogWatcher", "load_catalog", "default_catalog", "parse_catalog", "merge_catalog_dicts",
]

log = logging.getLogger("faregate.catalog")

_Price = Annotated[float, msgspec.Meta(ge=0)]
_Date = Annotated[str, msgspec.Meta(pattern=r"^(\d{4}-\d{2}-\d{2})?$")]
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class Capabilities(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tools: bool = False
    vision: bool = False
    json_mode: bool = False
    structured_output: bool = False
    streaming: bool = True
    reasoning: bool = False
    embeddings: bool = False


class LongContextPrice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Rates that apply to the whole request once ``prompt_tokens > threshold``
    (Gemini Pro and Claude Sonnet 1M-context pricing). Null cache prices fall back to
    this block's ``input``."""
    threshold: Annotated[int, msgspec.Meta(gt=0)]
    input: _Price
    output: _Price
    cached_input: _Price | None = None
    cache_write: _Price | None = None


class CatalogEntry(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One priced deployment (provider + upstream model id). Prices are USD per 1M tokens.

    ``cached_input``/``cache_write`` null means "no separate price": billed as ``input``.
    ``batch_discount`` is the fraction taken off every price on the provider's batch API.
    ``name`` is the catalog key (filled in by the loader)."""
    provider: _NonEmpty
    model: _NonEmpty
    input: _Price
    output: _Price
    cached_input: _Price | None = None
    cache_write: _Price | None = None
    cache_write_1h: _Price | None = None
    batch_discount: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.0
    context_window: Annotated[int, msgspec.Meta(gt=0)]
    max_output: Annotated[int, msgspec.Meta(ge=0)]
    capabilities: Capabilities = Capabilities()
    tier: Annotated[int, msgspec.Meta(ge=1, le=5)] = 3
    tier_reason: str = ""
    price_date: _Date = ""
    price_source: str = ""
    verified: bool = False
    notes: str = ""
    long_context: LongContextPrice | None = None
    name: str = ""

    # convenience for routing filters
    @property
    def supports_tools(self) -> bool:
        return self.capabilities.tools

    @property
    def supports_vision(self) -> bool:
        return self.capabilities.vision


ModelPrice = CatalogEntry  # alias used in the issue text


class CatalogError(ValueError):
    """Invalid catalog data. ``errors`` lists every problem found, each naming model and field."""

    def __init__(self, errors: list[str] | str):
        if isinstance(errors, str):
            errors = [errors]
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class Catalog:
    """An immutable set of :class:`CatalogEntry` keyed by public name, with O(1) lookups."""

    __slots__ = ("models", "version", "updated", "tier_method", "source", "_by_upstream", "_providers")

    def __init__(self, models: dict[str, CatalogEntry], *, version: int = 1, updated: str = "",
                 tier_method: str = "", source: str = "<memory>"):
        self.models: dict[str, CatalogEntry] = dict(models)
        self.version = version
        self.updated = updated
        self.tier_method = tier_method
        self.source = source
        by_up: dict[tuple[str, str], CatalogEntry] = {}
        for e in self.models.values():
            by_up.setdefault((e.provider, e.model), e)
        self._by_upstream = by_up
        self._providers = frozenset(e.provider for e in self.models.values())

    # --- mapping-ish API -------------------------------------------------------------
    def get(self, name: str, default: CatalogEntry | None = None) -> CatalogEntry | None:
        """Entry by public name (catalog key); also accepts ``provider/upstream-model``."""
        e = self.models.get(name)
        if e is not None:
            return e
        if "/" in name:
            prov, _, model = name.partition("/")
            e = self._by_upstream.get((prov, model))
            if e is not None:
                return e
        return default

    def __getitem__(self, name: str) -> CatalogEntry:
        e = self.get(name)
        if e is None:
            raise KeyError(name)
        return e

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def items(self):
        return self.models.items()

    def values(self):
        return self.models.values()

    @property
    def providers(self) -> frozenset[str]:
        return self._providers

    def by_provider(self, provider: str) -> list[CatalogEntry]:
        return [e for e in self.models.values() if e.provider == provider]

    def find(self, provider: str, model: str) -> CatalogEntry | None:
        """Price for a deployment given as provider + upstream model id (what a response's
        ``model`` field says). Tries the exact id, then the id without a date/version suffix
        (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``), then a catalog key equal to the id."""
        e = self._by_upstream.get((provider, model))
        if e is not None:
            return e
        base = _strip_snapshot(model)
        if base != model:
            e = self._by_upstream.get((provider, base))
            if e is not None:
                return e
        for cand in (model, base, f"{provider}/{model}", f"{provider}/{base}"):
            e = self.models.get(cand)
            if e is not None and e.provider == provider:
                return e
        return None

    def __repr__(self) -> str:
        return f"<Catalog {len(self.models)} models, {len(self._providers)} providers from {self.source}>"


_SNAPSHOT_RE = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")


def _strip_snapshot(model: str) -> str:
    return _SNAPSHOT_RE.sub("", model)


# --------------------------------------------------------------------------------------
# parsing and validation
# --------------------------------------------------------------------------------------

_MISSING_RE = re.compile(r"Object missing required field `([^`]+)`")
_UNKNOWN_RE = re.compile(r"Object contains unknown field `([^`]+)`")
_AT_RE = re.compile(r"^(.*) - at `\$(.*)`$", re.S)


def _lookup_path(raw: Any, path: str) -> Any:
    cur = raw
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, idx = part
        try:
            cur = cur[key] if key else cur[int(idx)]
        except (KeyError, IndexError, TypeError):
            return _NOVALUE
    return cur


_NOVALUE = object()


def _field_error(key: str, raw: Any, err: msgspec.ValidationError) -> str:
    msg = str(err)
    path = ""
    m = _AT_RE.match(msg)
    if m:
        msg, path = m.group(1), m.group(2)
    field = path.lstrip(".")
    m = _MISSING_RE.match(msg)
    if m:
        field = f"{field}.{m.group(1)}" if field else m.group(1)
        return f"catalog model {key!r}: field {field!r}: required field is missing"
    m = _UNKNOWN_RE.match(msg)
    if m:
        field = f"{field}.{m.group(1)}" if field else m.group(1)
        return f"catalog model {key!r}: field {field!r}: unknown field (check the spelling)"
    if not field:
        return f"catalog model {key!r}: {msg}"
    value = _lookup_path(raw, path)
    got = ""
    if value is not _NOVALUE:
        try:
            got = ", got " + json.dumps(value)
        except (TypeError, ValueError):
            got = f", got {value!r}"
    return f"catalog model {key!r}: field {field!r}: {_humanize(msg)}{got}"


_TYPE_WORDS = {"float": "a number", "int": "an integer", "bool": "true or false", "str": "a string",
               "object": "an object", "null": "null", "array": "an array"}


def _humanize(msg: str) -> str:
    """msgspec's 'Expected `float` >= 0.0, got `str`' -> 'expected a number >= 0'."""
    msg = re.sub(r", got `[^`]+`$", "", msg)
    if "matching regex" in msg and r"\d{4}-" in msg:
        return "expected a date YYYY-MM-DD"
    msg = re.sub(r"`([a-z]+)( \| null)?`",
                 lambda m: _TYPE_WORDS.get(m.group(1), m.group(1)) + (" or null" if m.group(2) else ""), msg)
    msg = re.sub(r"(\d+)\.0\b", r"\1", msg)
    return msg[0].lower() + msg[1:] if msg else msg


def _semantic_errors(key: str, e: CatalogEntry) -> list[str]:
    errs = []
    p = f"catalog model {key!r}: field"
    if e.cached_input is not None and e.cached_input > e.input:
        errs.append(f"{p} 'cached_input': cached input price {e.cached_input} is above the input price {e.input}")
    if e.max_output > e.context_window:
        errs.append(f"{p} 'max_output': {e.max_output} exceeds context_window {e.context_window}")
    if e.capabilities.embeddings and e.output not in (0, 0.0):
        # an embeddings model has no output tokens; a price here is almost certainly a slip
        errs.append(f"{p} 'output': embedding models have no output tokens, expected 0, got {e.output}")
    lc = e.long_context
    if lc is not None:
        if lc.cached_input is not None and lc.cached_input > lc.input:
            errs.append(f"{p} 'long_context.cached_input': {lc.cached_input} is above long_context.input {lc.input}")
        if lc.threshold >= e.context_window:
            errs.append(f"{p} 'long_context.threshold': {lc.threshold} is not below context_window {e.context_window}")
    return errs


def _validate_entry(key: str, raw: Any) -> tuple[CatalogEntry | None, list[str]]:
    if not isinstance(key, str) or not key.strip():
        return None, [f"catalog model {key!r}: the model name must be a non-empty string"]
    if not isinstance(raw, dict):
        return None, [f"catalog model {key!r}: expected an object with the model's fields, got {json.dumps(raw, default=str)}"]
    data = {k: v for k, v in raw.items() if k != "name"}
    try:
        entry = msgspec.convert(data, CatalogEntry)
    except msgspec.ValidationError as exc:
        return None, [_field_error(key, data, exc)]
    errs = _semantic_errors(key, entry)
    if errs:
        return None, errs
    return msgspec.structs.replace(entry, name=key), []


def merge_catalog_dicts(base: dict[str, Any], over: dict[str, Any] | None) -> dict[str, Any]:
    """Merge raw model dicts per model and per field (nested objects merged too).
    ``None`` as a model's value removes it. Inputs are not modified."""
    out = {k: copy.deepcopy(v) for k, v in base.items()}
    for key, val in (over or {}).items():
        if val is None:
            out.pop(key, None)
        elif isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def _deep_merge(a: dict, b: dict) -> dict:
    r = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(r.get(k), dict):
            r[k] = _deep_merge(r[k], v)
        else:
            r[k] = copy.deepcopy(v)
    return r


def parse_catalog(doc: Any, *, source: str = "<memory>") -> Catalog:
    """Validate a complete catalog document (``{"models": {...}, ...}``) into a Catalog."""
    if not isinstance(doc, dict):
        raise CatalogError(f"catalog {source}: expected an object with a 'models' object")
    models = doc.get("models")
    if not isinstance(models, dict):
        raise CatalogError(f"catalog {source}: 'models' must be an object mapping model names to entries")
    entries: dict[str, CatalogEntry] = {}
    errors: list[str] = []
    for key, raw in models.items():
        entry, errs = _validate_entry(key, raw)
        if errs:
            errors.extend(errs)
        else:
            entries[key] = entry
    if errors:
        raise CatalogError(errors)
    version = doc.get("version", 1)
    return Catalog(entries, version=version if isinstance(version, int) else 1,
                   updated=str(doc.get("updated", "")), tier_method=str(doc.get("tier_method", "")),
                   source=source)


def _read_doc_bytes(data: bytes, source: str) -> dict:
    try:
        if source.endswith((".yaml", ".yml")):
            import yaml
            doc = yaml.safe_load(data)
        else:
            doc = json.loads(data)
    except Exception as exc:  # JSON/YAML syntax
        raise CatalogError(f"catalog file {source}: cannot parse: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise CatalogError(f"catalog file {source}: expected an object at the top level")
    if "models" in doc and not isinstance(doc["models"], dict):
        raise CatalogError(f"catalog file {source}: 'models' must be an object mapping model names to entries")
    return doc


_default_doc: dict | None = None


def _packaged_doc() -> dict:
    global _default_doc
    if _default_doc is None:
        data = importlib.resources.files("proxy").joinpath("data/catalog.json").read_bytes()
        _default_doc = _read_doc_bytes(data, "proxy/data/catalog.json")
    return _default_doc


_default_catalog: Catalog | None = None


def default_catalog() -> Catalog:
    """The packaged catalog alone (validated once, then shared: a Catalog is immutable)."""
    global _default_catalog
    if _default_catalog is None:
        _default_catalog = load_catalog()
    return _default_catalog


def load_catalog(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None,
                 *, include_default: bool = True) -> Catalog:
    """Build a Catalog: packaged default, then the user file at ``path`` (merged per model
    unless it says ``"extends_default": false``), then ``overrides`` (``{model: {field: value}}``,
    or ``{"models": {...}}``) merged per model. Raises :class:`CatalogError`."""
    base_doc = _packaged_doc() if include_default else {"models": {}}
    meta = {k: v for k, v in base_doc.items() if k != "models"}
    models: dict[str, Any] = base_doc.get("models", {})
    source = "proxy/data/catalog.json" if include_default else "<empty>"
    if path is not None:
        p = os.fspath(path)
        try:
            with open(p, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise CatalogError(f"catalog file {p}: cannot read: {exc.strerror or exc}") from None
        user = _read_doc_bytes(data, p)
        if user.get("extends_default", True) is False:
            models = {}
            meta = {}
        meta.update({k: v for k, v in user.items() if k not in ("models", "extends_default")})
        models = merge_catalog_dicts(models, user.get("models") or {})
        source = p
    if overrides:
        ov = overrides.get("models") if isinstance(overrides.get("models"), dict) else overrides
        models = merge_catalog_dicts(models, ov)
        source += " + config overrides"
    return parse_catalog({**meta, "models": models}, source=source)


# --------------------------------------------------------------------------------------
# hot reload
# --------------------------------------------------------------------------------------

def _file_sig(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class CatalogWatcher:
    """Holds the live Catalog and reloads it when the user catalog file changes.

    ``watcher.catalog`` is always a complete, valid Catalog (readers just take the
    reference). ``start()`` launches the polling task on the running loop; ``check()`` does
    one poll synchronously (handy for tests and for a SIGHUP handler). An invalid new file
    is logged and counted in ``errors``; ``last_error`` keeps its message; the old catalog
    stays. ``on_reload(new_catalog)`` is called after every successful swap."""

    def __init__(self, path: str | os.PathLike, *, overrides: dict[str, Any] | None = None,
                 interval: float = 2.0, include_default: bool = True,
                 on_reload: Callable[[Catalog], Any] | None = None,
                 catalog: Catalog | None = None):
        self.path = os.fspath(path)
        self.overrides = overrides
        self.interval = float(interval)
        self.include_default = include_default
        self.on_reload = on_reload
        self._sig = _file_sig(self.path)
        self.catalog: Catalog = catalog if catalog is not None else self._load()
        self.reloads = 0
        self.errors = 0
        self.last_error: str | None = None
        self._task: asyncio.Task | None = None
        self._missing_logged = False

    def _load(self) -> Catalog:
        return load_catalog(self.path, self.overrides, include_default=self.include_default)

    def get(self, name: str) -> CatalogEntry | None:
        return self.catalog.get(name)

    def _changed(self) -> tuple[bool, tuple | None]:
        sig = _file_sig(self.path)
        if sig is None:
            if not self._missing_logged:
                log.warning("catalog file %s is missing; keeping the current catalog", self.path)
                self._missing_logged = True
            return False, None
        self._missing_logged = False
        return sig != self._sig, sig

    def _swap(self, sig: tuple | None, new: Catalog | None, exc: CatalogError | None) -> bool:
        self._sig = sig
        if exc is not None:
            self.errors += 1
            self.last_error = str(exc)
            log.error("catalog file %s rejected, keeping the previous catalog: %s", self.path, exc)
            return False
        self.catalog = new  # single reference swap
        self.reloads += 1
        self.last_error = None
        log.info("catalog reloaded from %s: %d models", self.path, len(new))
        if self.on_reload is not None:
            try:
                self.on_reload(new)
            except Exception:  # a bad callback must not kill the watcher
                log.exception("catalog on_reload callback failed")
        return True

    def _try_load(self) -> tuple[Catalog | None, CatalogError | None]:
        try:
            return self._load(), None
        except CatalogError as exc:
            return None, exc

    def check(self) -> bool:
        """Poll once; reload if the file changed. True if a new catalog was swapped in."""
        changed, sig = self._changed()
        if not changed:
            return False
        return self._swap(sig, *self._try_load())

    async def check_async(self) -> bool:
        """Like :meth:`check`, reading and validating the file off the event loop."""
        changed, sig = self._changed()
        if not changed:
            return False
        new, exc = await asyncio.to_thread(self._try_load)
        return self._swap(sig, new, exc)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_async()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the watcher die
                log.exception("catalog watcher poll failed")

    def start(self) -> asyncio.Task:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="faregate-catalog-watcher")
        return self._task

    async def stop(self) -> None:
        t, self._task = self._task, None
        if t is not None and not t.done():
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass
