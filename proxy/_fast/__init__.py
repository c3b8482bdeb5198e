"""The compiled hot path, with its pure-Python twin as the fallback.

`_hotpath_c` (Cython) is used when it was built; `FAREGATE_NO_EXTENSIONS=1` forces the
twin `_hotpath_py`, which defines the behaviour. Both export the same names.
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
count_text_tokens = _impl.count_text_tokens
count_chat_tokens = _impl.count_chat_tokens
cache_key = _impl.cache_key
cache_key_hex = _impl.cache_key_hex
CACHE_EXCLUDED = _impl.CACHE_EXCLUDED
WeightedPicker = _impl.WeightedPicker
LatencyWindow = _impl.LatencyWindow
IMPLEMENTATION = "c" if _impl.__name__.endswith("_c") else "py"

__all__ = ["SSEEvent", "SSEParser", "encode_sse", "extract_chunk", "count_text_tokens",
           "count_chat_tokens", "cache_key", "cache_key_hex", "CACHE_EXCLUDED",
           "WeightedPicker", "LatencyWindow", "IMPLEMENTATION", "NO_EXTENSIONS"]
