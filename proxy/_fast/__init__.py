"""The compiled hot path, with its pure-Python twin as the fallback.

`_hotpath_c` (Cython) is used when it was built; `FAREGATE_NO_EXTENSIONS=1` forces the
twin `_hotpath_py`, which defines the behaviour. Both export the same names:

- `SSEParser().feed(bytes) -> [SSEEvent]`, `encode_sse(data, event=None) -> bytes`
- `extract_chunk(data) -> (content, tool_args, finish_reason, usage, is_error, shape)`; shape is
  `SHAPE_OTHER`, `SHAPE_CHOICES` or `SHAPE_SIMPLE` (which fast path may pass the chunk on)
- `count_text_tokens(text) -> int` (o200k-calibrated estimate), `count_chat_tokens(body)`
- `cache_key(body, route, scope="") -> 16 bytes`, `cache_key_hex(...)`, `CACHE_EXCLUDED`
- `WeightedPicker(weights)`: `.pick(u)`, `.pick_excluding(u, excluded)`, `.replace(weights)`
- `LatencyWindow(window_s=60.0, slices=12)`: `.observe(ms, ok, now)`, `.quantile(q, now)`,
  `.p50/.p95/.p99(now)`, `.error_rate(now)`, `.count(now)`

Exact token counts (not a hot-path kernel) are in `proxy.tokens.exact_token_counter`.
"""
import os
import sys

NO_EXTENSIONS = bool(os.environ.get("FAREGATE_NO_EXTENSIONS")) or (
    sys.implementation.name != "cpython"
)

from . import _hotpath_py as _impl  # noqa: E402

if not NO_EXTENSIONS:
    try:
        from . import _hotpath_c as _impl  # type: ignore[no-redef]
    except ImportError:  # extension not built: results are the same, only slower
        pass

SSEEvent = _impl.SSEEvent
SSEParser = _impl.SSEParser
encode_sse = _impl.encode_sse
extract_chunk = _impl.extract_chunk
SHAPE_OTHER = _impl.SHAPE_OTHER
SHAPE_CHOICES = _impl.SHAPE_CHOICES
SHAPE_SIMPLE = _impl.SHAPE_SIMPLE
count_text_tokens = _impl.count_text_tokens
count_chat_tokens = _impl.count_chat_tokens
cache_key = _impl.cache_key
cache_key_hex = _impl.cache_key_hex
CACHE_EXCLUDED = _impl.CACHE_EXCLUDED
WeightedPicker = _impl.WeightedPicker
LatencyWindow = _impl.LatencyWindow
IMPLEMENTATION = "c" if _impl.__name__.endswith("_c") else "py"

__all__ = ["SSEEvent", "SSEParser", "encode_sse", "extract_chunk", "SHAPE_OTHER", "SHAPE_CHOICES",
           "SHAPE_SIMPLE", "count_text_tokens",
           "count_chat_tokens", "cache_key", "cache_key_hex", "CACHE_EXCLUDED",
           "WeightedPicker", "LatencyWindow", "IMPLEMENTATION", "NO_EXTENSIONS"]
