"""Configuration: one YAML file validated into typed msgspec structs.

`${VAR}` and `${VAR:-default}` in any string are replaced from the environment (secrets live
there, not in the file). Every error names the key path, the line, what was expected and
what was found. With no file, `config_from_env()` enables the providers whose API keys are
set; `--demo` builds a config around the simulated providers (see demo.py).
"""
from __future__ import annotations

import os
import re
from typing import Annotated, Any

import msgspec
import yaml

from .cache.settings import CacheConfig, check_cache_config
from .routeconfig import RouteConfig, RouteDeployment, RoutingConfig, check_routing

__all__ = ["Config", "ServerConfig", "UpstreamConfig", "ModelConfig", "ModelPriceConfig", "KeyConfig",
           "CatalogConfig", "LedgerConfig", "MetricsConfig", "ConfigError", "load_config", "parse_config",
           "config_from_env"]


class ConfigError(Exception):
    """A configuration problem, with the key path and line where it is."""


class ServerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    host: str | None = None          # None: loopback when no client keys are set, else all interfaces
    port: int = 8080
    workers: int = 1
    max_body_mb: float = 20.0
    access_log: bool = True
    shutdown_grace_s: float = 30.0
    allow_public_without_keys: bool = False


class UpstreamConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 60.0   # also the longest silence allowed between stream chunks
    total_timeout_s: float = 600.0
    pool_limit: int = 1000
    pool_limit_per_host: int = 256
    keepalive_s: float = 60.0


_Price = Annotated[float, msgspec.Meta(ge=0)]


class ModelPriceConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A deployment's own price (USD per 1M tokens), ahead of the catalog's."""
    input: _Price
    output: _Price = 0.0
    cached_input: _Price | None = None   # None: billed as input
    cache_write: _Price | None = None    # None: billed as input


class ModelConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str                         # the public name clients send as `model`
    provider: str = "openai"
    model: str | None = None          # the provider's model id; defaults to `name`
    base_url: str | None = None       # defaults to the provider's public endpoint
    api_key: str | None = None        # defaults to the provider's usual environment variable
    headers: dict[str, str] = {}
    options: dict[str, Any] = {}
    weight: float = 1.0
    price: ModelPriceConfig | None = None  # default: the catalog's price for this deployment


class KeyConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    key: str                          # the bearer token clients send
    id: str | None = None             # what the ledger records instead of the key
    models: list[str] | None = None   # allowed public model names (None: all)
    admin: bool = False               # may read /v1/spend


class CatalogConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    path: str | None = None              # a user catalog file (JSON or YAML), re-read when it changes
    overrides: dict[str, Any] = {}       # {model: {field: value}} merged over the catalog, per field
    reload_interval_s: float = 2.0       # how often the file is checked for changes


class LedgerConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    path: str = "./faregate-ledger.sqlite3"  # SQLite, WAL mode; every worker writes to it
    batch_size: int = 256                # rows per write
    flush_interval_s: float = 0.5        # longest a finished request waits in memory
    queue_max: int = 100_000             # rows waiting; past it rows are dropped (and counted)


class MetricsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True                 # GET /metrics in Prometheus format


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    upstream: UpstreamConfig = msgspec.field(default_factory=UpstreamConfig)
    models: list[ModelConfig] = []
    keys: list[KeyConfig] = []
    catalog: CatalogConfig = msgspec.field(default_factory=CatalogConfig)
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    cache: CacheConfig = msgspec.field(default_factory=CacheConfig)
    routes: list[RouteConfig] = []       # named routes over model entries (see routeconfig.py)
    routing: RoutingConfig = msgspec.field(default_factory=RoutingConfig)
    demo: bool = False


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(value: Any, path: str, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set "
                              f"(use ${{{name}:-default}} for a default)")
        return _ENV_RE.sub(repl, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


def _line_of(node: yaml.Node | None, path: list[str | int]) -> int | None:
    """The 1-based line of the YAML node at `path` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, val in node.value:
                if key.value == part:
                    node = val
                    line = key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


_PATH_RE = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")


def _explain(err: msgspec.ValidationError, root: yaml.Node | None, source: str) -> ConfigError:
    msg = str(err)
    where = ""
    path: list[str | int] = []
    if " - at `" in msg:
        msg, where = msg.rsplit(" - at `", 1)
        where = where.rstrip("`")
        path = [m.group(1) if m.group(1) else int(m.group(2)) for m in _PATH_RE.finditer(where[1:])]
    unknown = re.match(r"Object contains unknown field `(.+)`", msg)
    if unknown:
        path.append(unknown.group(1))
        msg = f"unknown key (check the spelling; see the README for the keys {where.lstrip('$.') or 'at the top level'} accepts)"
    else:
        msg = msg.replace("Expected", "expected").replace("Object missing required field", "missing required key")
    key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[") or "(top level)"
    line = _line_of(root, path)
    at = f"{source}, line {line}" if line else source
    return ConfigError(f"{at}: {key}: {msg}")


def parse_config(text: str, source: str = "<config>", env: dict[str, str] | None = None) -> Config:
    try:
        root = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}, line 1: expected a mapping of keys at the top level, "
                          f"found {type(raw).__name__}")
    try:
        raw = _interpolate(raw, "$", dict(os.environ) if env is None else env)
    except ConfigError as exc:
        text_ = str(exc)
        path = [m.group(1) if m.group(1) else int(m.group(2)) for m in _PATH_RE.finditer(text_.split(":", 1)[0][1:])]
        line = _line_of(root, path)
        raise ConfigError(f"{source}, line {line}: {text_.lstrip('$.')}") from None
    try:
        cfg = msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise _explain(exc, root, source) from None
    _check(cfg, root, source)
    return cfg


def _check(cfg: Config, root: yaml.Node | None, source: str) -> None:
    def fail(path: list[str | int], msg: str) -> None:
        key = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        raise ConfigError(f"{source}, line {_line_of(root, path)}: {key}: {msg}")

    if not 1 <= cfg.server.port <= 65535:
        fail(["server", "port"], f"expected a port between 1 and 65535, found {cfg.server.port}")
    if cfg.server.workers < 1:
        fail(["server", "workers"], f"expected at least 1, found {cfg.server.workers}")
    if cfg.server.max_body_mb <= 0:
        fail(["server", "max_body_mb"], f"expected a positive size, found {cfg.server.max_body_mb}")
    for name in ("connect_timeout_s", "first_byte_timeout_s", "total_timeout_s", "keepalive_s"):
        if getattr(cfg.upstream, name) <= 0:
            fail(["upstream", name], f"expected a positive number of seconds, found {getattr(cfg.upstream, name)}")
    for i, m in enumerate(cfg.models):
        if not m.name:
            fail(["models", i, "name"], "expected a non-empty model name")
        if m.weight < 0:
            fail(["models", i, "weight"], f"expected a weight >= 0, found {m.weight}")
        if m.base_url is None:
            from adapters import PROVIDERS  # noqa: PLC0415 (adapters import the hot path)
            info = PROVIDERS.get(m.provider)
            if info is None:
                fail(["models", i, "provider"], f"unknown provider {m.provider!r} and no base_url given; "
                     f"known providers: {', '.join(sorted(PROVIDERS))}")
            elif not info.base_url and not (info.base_url_env and os.environ.get(info.base_url_env)):
                fail(["models", i, "base_url"], f"provider {m.provider!r} needs a base_url")
        elif not m.base_url.startswith(("http://", "https://")):
            fail(["models", i, "base_url"], f"expected an http:// or https:// URL, found {m.base_url!r}")
    seen: set[str] = set()
    for i, k in enumerate(cfg.keys):
        if not k.key:
            fail(["keys", i, "key"], "expected a non-empty key (is its environment variable empty?)")
        if k.key in seen:
            fail(["keys", i, "key"], "the same key is listed twice")
        seen.add(k.key)
    if cfg.catalog.reload_interval_s <= 0:
        fail(["catalog", "reload_interval_s"], f"expected a positive number of seconds, "
             f"found {cfg.catalog.reload_interval_s}")
    for name in ("batch_size", "queue_max"):
        if getattr(cfg.ledger, name) < 1:
            fail(["ledger", name], f"expected at least 1, found {getattr(cfg.ledger, name)}")
    if cfg.ledger.flush_interval_s <= 0:
        fail(["ledger", "flush_interval_s"], f"expected a positive number of seconds, "
             f"found {cfg.ledger.flush_interval_s}")
    if cfg.ledger.enabled and not cfg.ledger.path:
        fail(["ledger", "path"], "expected a file path for the SQLite ledger")
    _check_catalog(cfg.catalog, fail)
    check_cache_config(cfg.cache, fail)
    check_routing(cfg.routes, cfg.routing, {m.name for m in cfg.models}, _known_provider, fail)


def _known_provider(name: str) -> bool:
    from adapters import PROVIDERS  # noqa: PLC0415 (adapters import the hot path)

    return name in PROVIDERS


_CATALOG_ERR_RE = re.compile(r"catalog model '([^']+)': field '([^']+)'")


def _check_catalog(cc: CatalogConfig, fail) -> None:
    """The user catalog file and overrides must make a valid catalog: a bad entry is a config
    error at start-up naming the model and the field (and the line, for an override)."""
    if cc.path is None and not cc.overrides:
        return
    from .catalog import CatalogError, load_catalog  # noqa: PLC0415

    try:
        load_catalog(cc.path, cc.overrides or None)
    except CatalogError as exc:
        first = exc.errors[0] if exc.errors else str(exc)
        m = _CATALOG_ERR_RE.match(first)
        ov = cc.overrides.get("models") if isinstance(cc.overrides.get("models"), dict) else cc.overrides
        if m and m.group(1) in ov:
            path: list[str | int] = ["catalog", "overrides"]
            if ov is not cc.overrides:
                path.append("models")
            path.append(m.group(1))
            if isinstance(ov.get(m.group(1)), dict) and m.group(2).split(".")[0] in ov[m.group(1)]:
                path.append(m.group(2).split(".")[0])
        elif cc.path is not None:
            path = ["catalog", "path"]
            if not first.startswith("catalog file"):
                first = f"in {cc.path}: {first}"
        else:
            path = ["catalog", "overrides"]
        more = f" (and {len(exc.errors) - 1} more: {'; '.join(exc.errors[1:])})" if len(exc.errors) > 1 else ""
        fail(path, first + more)


def load_config(path: str) -> Config:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return parse_config(text, source=path)


def config_from_env(env: dict[str, str] | None = None) -> Config:
    """No file: every catalog model of each provider whose API key is in the environment."""
    from adapters import PROVIDERS  # noqa: PLC0415 (adapters import the hot path)

    from .catalog import default_catalog  # noqa: PLC0415

    env = dict(os.environ) if env is None else env
    enabled = {name for name, info in PROVIDERS.items() if info.key_env and env.get(info.key_env)}
    models = [ModelConfig(name=name, provider=entry.provider, model=entry.model)
              for name, entry in default_catalog().items() if entry.provider in enabled]
    return Config(models=models)
