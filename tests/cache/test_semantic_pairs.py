"""The labelled paraphrase / near-miss pairs against each embedder, with and without the
guard: precision and recall are printed (pytest -s shows them); no near miss may be served
and at least half of the paraphrases must hit."""
from __future__ import annotations

import numpy as np
import pytest

from bench.mocks.core import embed_text
from proxy.cache.embedders import DEFAULT_THRESHOLDS, HashedEmbedder, MiniLMEmbedder, minilm_available
from proxy.cache.guard import near_miss

from .pairs import ALL_NEAR_MISSES, NEAR_MISSES, PARAPHRASES

# The mock provider's embeddings (hashed words + trigrams, like the gateway-routed tests
# use) are no language model: its threshold is the one the e2e tests configure.
MOCK_THRESHOLD = 0.75


class MockEmbedder:
    name = "mock-gateway"

    async def embed(self, texts):
        a = np.asarray([embed_text(t) for t in texts], dtype=np.float32)
        return a / np.linalg.norm(a, axis=1, keepdims=True)


def _embedders():
    yield pytest.param(HashedEmbedder(), DEFAULT_THRESHOLDS["builtin"], id="builtin")
    yield pytest.param(MockEmbedder(), MOCK_THRESHOLD, id="mock-gateway")
    why = minilm_available()
    yield pytest.param(MiniLMEmbedder() if why is None else None, DEFAULT_THRESHOLDS["minilm"], id="minilm",
                       marks=[pytest.mark.skipif(why is not None, reason=why or "")])


async def _scores(emb, pairs):
    out = []
    for a, b in pairs:
        v = await emb.embed([a, b])
        out.append(float(v[0] @ v[1]))
    return out


def test_pairs_cover_every_kind():
    assert len(PARAPHRASES) >= 30 and len(ALL_NEAR_MISSES) >= 30
    assert set(NEAR_MISSES) == {"numbers", "negation", "polarity", "entities", "order"}
    assert all(len(v) >= 5 for v in NEAR_MISSES.values())


@pytest.mark.parametrize("emb,threshold", list(_embedders()))
async def test_precision_recall(emb, threshold, capsys):
    para = await _scores(emb, PARAPHRASES)
    near = await _scores(emb, ALL_NEAR_MISSES)
    # cached question first, new question second: what the cache compares
    served_p = [s >= threshold and near_miss(b, a) is None for s, (a, b) in zip(para, PARAPHRASES)]
    served_n = [s >= threshold and near_miss(b, a) is None for s, (a, b) in zip(near, ALL_NEAR_MISSES)]
    raw_p = [s >= threshold for s in para]
    raw_n = [s >= threshold for s in near]

    def pr(tp, fp):
        return (tp / (tp + fp) if tp + fp else 1.0), tp / len(PARAPHRASES)

    p_guard, r_guard = pr(sum(served_p), sum(served_n))
    p_raw, r_raw = pr(sum(raw_p), sum(raw_n))
    with capsys.disabled():
        print(f"\n[{emb.name} @ {threshold:.2f}] with guard: precision {p_guard:.2f} recall {r_guard:.2f} "
              f"({sum(served_p)}/{len(PARAPHRASES)} paraphrases, {sum(served_n)}/{len(ALL_NEAR_MISSES)} near misses served); "
              f"threshold only: precision {p_raw:.2f} recall {r_raw:.2f} ({sum(raw_n)} near misses over it)")
    leaked = [pair for pair, s in zip(ALL_NEAR_MISSES, served_n) if s]
    assert not leaked, f"near misses served: {leaked}"
    assert r_guard >= 0.5


@pytest.mark.parametrize("kind", sorted(NEAR_MISSES))
def test_guard_names_the_difference(kind):
    for a, b in NEAR_MISSES[kind]:
        assert near_miss(b, a) is not None, (a, b)
        assert near_miss(a, b) is not None, (b, a)


@pytest.mark.parametrize("a,b", PARAPHRASES[:12])
def test_guard_lets_simple_paraphrases_through(a, b):
    assert near_miss(b, a) is None


@pytest.mark.parametrize("a,b,why", [
    ("What is 1+1?", "What is 21+1?", "numbers"),
    ("What is 2-1?", "What is 1-2?", "numbers"),
    ("Turn dark mode on", "turn dark mode off", "polarity"),
    ("Miles to km", "km to miles", "order"),
    ("Is it raining in Paris?", "Is it not raining in Paris?", "negation"),
    ("What is the capital of France?", "What is the capital of Peru?", "entities"),
    ('Translate "hello" to German', 'Translate "goodbye" to German', "quoted"),
    ("I can't log in", "I can log in", "negation"),
])
def test_guard_reasons(a, b, why):
    assert near_miss(a, b) == why


def test_hashed_embedder_is_deterministic_and_normalised():
    e = HashedEmbedder()
    v1, v2 = e.vector("How do I reset my password?"), e.vector("How do I reset my password?")
    assert np.array_equal(v1, v2)
    assert abs(float(np.linalg.norm(v1)) - 1.0) < 1e-5
    assert float(e.vector("reset password") @ e.vector("bake a chocolate cake")) < 0.2
    assert not e.vector("the of and").any()  # only stopwords: the zero vector, never a hit
