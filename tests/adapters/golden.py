"""Golden files for the adapter tests: recorded inputs in tests/adapters/data/<provider>/,
the adapter's reviewed output next to them in `*.expected.json`.

`FAREGATE_REGEN_GOLDEN=1 pytest tests/adapters` rewrites the expected files from the current
adapters; review the diff before committing it. Values that change on every run (`created`,
generated tool-call ids) are normalised away.
"""
from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import orjson

from adapters import Deployment, get_adapter

DATA = Path(__file__).resolve().parent / "data"
REGEN = bool(os.environ.get("FAREGATE_REGEN_GOLDEN"))
_GENERATED_ID = re.compile(r"call_[0-9a-f]{24}")

DEFAULT_BASE = {"anthropic": "https://api.anthropic.com", "gemini": "https://generativelanguage.googleapis.com",
                "azure": "https://myres.openai.azure.com"}


def providers() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if p.is_dir())


def deployment(provider: str, spec: dict | None = None) -> Deployment:
    spec = spec or {}
    return Deployment(name="public-name", provider=provider, model=spec.get("model", "upstream-model"),
                      base_url=spec.get("base_url", DEFAULT_BASE.get(provider, f"https://{provider}.example/v1")),
                      api_key=spec.get("api_key", "sk-test"), headers=spec.get("headers", {}),
                      options=spec.get("options", {}))


def load(provider: str, name: str) -> list[dict]:
    path = DATA / provider / name
    return json.loads(path.read_text()) if path.exists() else []


def normalize(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (0 if k == "created" else normalize(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [normalize(v) for v in obj]
    if isinstance(obj, str):
        return _GENERATED_ID.sub("call_<generated>", obj)
    return obj


def check(provider: str, name: str, actual: dict) -> None:
    """Compare with (or, regenerating, record) the expected outputs of one data file."""
    path = DATA / provider / (name + ".expected.json")
    actual = normalize(actual)
    if REGEN or not path.exists():
        path.write_text(json.dumps(actual, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        if not REGEN:
            raise AssertionError(f"recorded new golden file {path.name}; review it and rerun")
        return
    expected = json.loads(path.read_text())
    for key in expected.keys() | actual.keys():
        assert actual.get(key) == expected.get(key), f"{provider}/{name}: case {key!r} differs"


def sse_events(data: bytes) -> list[Any]:
    """The JSON payloads of OpenAI SSE bytes ("[DONE]" kept as a string)."""
    out = []
    for block in data.split(b"\n\n"):
        if not block:
            continue
        assert block.startswith(b"data: "), block
        payload = block[6:]
        out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def run_stream(provider: str, raw: bytes, *, include_usage: bool, splits: list[int] | None = None,
               model: str = "upstream-model") -> tuple[bytes, Any]:
    translator = get_adapter(provider).chat_stream(deployment(provider, {"model": model}),
                                                   include_usage=include_usage)
    out = []
    if splits is None:
        out.append(translator.feed(raw))
    else:
        start = 0
        for end in splits + [len(raw)]:
            out.append(translator.feed(raw[start:end]))
            start = end
    out.append(translator.finish())
    return b"".join(out), translator


def random_splits(n: int, rng: random.Random) -> list[int]:
    return sorted(rng.sample(range(1, n), min(n - 1, rng.randint(1, 40)))) if n > 1 else []
