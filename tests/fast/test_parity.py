"""Property tests: the compiled module gives the twin's answer on generated input."""
import random

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])

# --- token estimator ------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    list("aAzZ09 \t\n\r'.,;:()[]{}\"/\\-_=+*&^%$#@!?~`<>|")
    + list("éüßçñøÅ" "привет" "ΑβΓ" "你好世界中文" "ひらがなカタカナ" "한국어" "مرحبا" "नमस्ते" "ไทย")
    + ["🎉", "👍🏽", "\u200d", "\ufe0f", "\u00a0", "\u3000", "\u2028", "½", "²", "Ⅳ", "\u0301",
       "\ud800", "ǅ", "İ", "ſ", "K"])

texts = st.one_of(
    st.text(max_size=300),
    st.lists(_ALPHABET, max_size=300).map("".join),
    # runs: long whitespace, digit, punctuation and letter runs hit the tables' far ends
    st.lists(st.tuples(_ALPHABET, st.integers(1, 120)), max_size=12).map(
        lambda runs: "".join(ch * n for ch, n in runs)),
)


@SETTINGS
@given(texts)
def test_count_text_tokens_parity(both, text):
    py, c = both
    assert c.count_text_tokens(text) == py.count_text_tokens(text)


def test_count_text_tokens_parity_on_the_corpus(both):
    from bench.token_corpus import corpus

    py, c = both
    for samples in corpus().values():
        for text in samples:
            assert c.count_text_tokens(text) == py.count_text_tokens(text)


@SETTINGS
@given(st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["system", "user", "assistant", "tool"]),
    "content": st.one_of(texts, st.none(), st.lists(st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
        st.fixed_dictionaries({"type": st.just("image_url"),
                               "image_url": st.fixed_dictionaries({
                                   "url": st.just("https://x/y.png"),
                                   "detail": st.sampled_from(["low", "high", "auto"])})})),
        max_size=3)),
}), max_size=5))
def test_count_chat_tokens_parity(both, messages):
    py, c = both
    body = {"model": "m", "messages": messages}
    assert c.count_chat_tokens(body) == py.count_chat_tokens(body)


# --- SSE ------------------------------------------------------------------------------

_LINE = st.one_of(
    st.builds(lambda d: b"data: " + d, st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))),
    st.sampled_from([b"", b":comment", b"event: delta", b"id: 7", b"id: a\x00b", b"retry: 1500",
                     b"retry: x1", b"data", b"data:[DONE]", b"data:  two spaces", b"field: v",
                     b"event", b"id", b": keepalive"]),
)


@st.composite
def sse_streams(draw):
    lines = draw(st.lists(_LINE, max_size=30))
    ends = draw(st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=len(lines), max_size=len(lines)))
    stream = b"".join(l + e for l, e in zip(lines, ends)) + draw(st.sampled_from([b"", b"\n", b"\r", b"data: tail"]))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks, prev = [], 0
    for cut in cuts + [len(stream)]:
        chunks.append(stream[prev:cut])
        prev = cut
    return stream, chunks


def _run(parser_cls, chunks):
    parser = parser_cls()
    out = []
    for ch in chunks:
        out.extend((e.event, e.data, e.id, e.retry) for e in parser.feed(ch))
    parser.close()
    return out


@SETTINGS
@given(sse_streams())
def test_sse_parity_any_chunking(both, stream_and_chunks):
    py, c = both
    stream, chunks = stream_and_chunks
    whole = _run(py.SSEParser, [stream])
    assert _run(py.SSEParser, chunks) == whole
    assert _run(c.SSEParser, chunks) == whole
    assert _run(c.SSEParser, [bytes([b]) for b in stream]) == whole


# --- extract_chunk --------------------------------------------------------------------

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_json = st.recursive(_json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=20)

_delta = st.fixed_dictionaries({}, optional={
    "role": st.one_of(st.sampled_from(["assistant", "user"]), st.none(), _json_leaf),
    "content": st.one_of(st.text(max_size=30), st.none(), _json_leaf),
    "refusal": st.one_of(st.none(), st.text(max_size=8)),
    "reasoning_content": st.one_of(st.none(), st.text(max_size=8)),
    "tool_calls": st.one_of(_json_leaf, st.lists(st.one_of(_json_leaf, st.fixed_dictionaries(
        {"index": st.integers(0, 3)},
        optional={"function": st.one_of(_json_leaf, st.fixed_dictionaries({}, optional={
            "name": st.text(max_size=8),
            "arguments": st.one_of(st.text(max_size=20), _json_leaf)}))})), max_size=3)),
})
_choice = st.fixed_dictionaries({}, optional={
    "index": st.one_of(st.integers(0, 3), st.just(0), st.sampled_from([0.0, False, "0", None])),
    "delta": st.one_of(_delta, _json_leaf),
    "finish_reason": st.one_of(st.sampled_from(["stop", "length", "tool_calls", ""]), _json_leaf),
    "logprobs": _json,
})
_chunk = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=10), "object": st.just("chat.completion.chunk"),
    "choices": st.one_of(st.lists(st.one_of(_choice, _json_leaf), max_size=3),
                         st.lists(_choice, min_size=1, max_size=1), _json_leaf),
    "usage": st.one_of(st.none(), st.just({}), st.dictionaries(st.text(max_size=8), st.integers(0, 10**6), max_size=4), _json_leaf),
    "error": _json,
    "x_groq": _json,
    "extra": _json,
})


def _with_duplicates(obj, draw) -> bytes:
    """`obj` as JSON text in which some members repeat with other values before or after the
    one that counts (the reference keeps the last)."""
    if isinstance(obj, dict):
        parts = []
        for k, v in obj.items():
            if draw(st.integers(0, 3)) == 0:
                parts.append(orjson.dumps(k) + b":" + orjson.dumps(draw(_json_leaf)))
            parts.append(orjson.dumps(k) + b":" + _with_duplicates(v, draw))
        return b"{" + b",".join(parts) + b"}"
    if isinstance(obj, list):
        return b"[" + b",".join(_with_duplicates(v, draw) for v in obj) + b"]"
    return orjson.dumps(obj)


def _same(py, c, data):
    try:
        want = py.extract_chunk(data)
    except ValueError:
        with pytest.raises(ValueError):
            c.extract_chunk(data)
        return
    assert c.extract_chunk(data) == want


@SETTINGS
@given(_chunk, st.sampled_from([0, orjson.OPT_INDENT_2]))
def test_extract_chunk_parity_on_chunks(both, obj, opt):
    py, c = both
    _same(py, c, orjson.dumps(obj, option=opt))


@SETTINGS
@given(_chunk, st.data())
def test_extract_chunk_parity_with_duplicate_keys(both, obj, data):
    py, c = both
    _same(py, c, _with_duplicates(obj, data.draw))


@SETTINGS
@given(_chunk, st.data())
def test_extract_chunk_parity_on_mutated_bytes(both, obj, data):
    """Corrupted payloads: both raise, or both give the same answer."""
    py, c = both
    raw = bytearray(orjson.dumps(obj))
    for _ in range(data.draw(st.integers(1, 3))):
        if not raw:
            break
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.integers(0, 2))
        byte = data.draw(st.sampled_from(b'{}[]",:\\ \x00\x80\xff0e-.tnu'))
        if op == 0:
            raw[pos] = byte
        elif op == 1:
            raw.insert(pos, byte)
        else:
            del raw[pos]
    _same(py, c, bytes(raw))


@SETTINGS
@given(_json)
def test_extract_chunk_parity_on_any_json(both, obj):
    py, c = both
    _same(py, c, orjson.dumps(obj))


# --- cache keys -----------------------------------------------------------------------

@SETTINGS
@given(st.dictionaries(st.text(max_size=12), _json, max_size=8), st.text(max_size=8))
def test_cache_key_parity(both, body, route):
    py, c = both
    assert c.cache_key(body, route) == py.cache_key(body, route)


@SETTINGS
@given(st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": _json},
                                      optional={"tool_calls": _json, "name": _json_leaf}), max_size=4))
def test_cache_key_parity_messages(both, messages):
    py, c = both
    body = {"model": "m", "messages": messages, "temperature": 1.0}
    assert c.cache_key(body, "r") == py.cache_key(body, "r")


@SETTINGS
@given(_json)
def test_cache_key_ignores_key_order(kernels, value):
    body = {"model": "m", "a": value, "b": [value, {"x": value, "y": 1}]}
    shuffled = orjson.loads(orjson.dumps({"b": body["b"], "a": value, "model": "m"}))
    assert kernels.cache_key(body, "r") == kernels.cache_key(shuffled, "r")


# --- selection and windows ------------------------------------------------------------

_weights = st.lists(st.one_of(st.just(0.0), st.floats(0, 1e6, allow_nan=False)), max_size=40)


@SETTINGS
@given(_weights, st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=20),
       st.sets(st.integers(0, 40), max_size=5))
def test_picker_parity(both, weights, us, excluded):
    py, c = both
    a, b = py.WeightedPicker(weights), c.WeightedPicker(weights)
    for u in us:
        i = a.pick(u)
        assert b.pick(u) == i
        assert i == -1 or weights[i] > 0
        j = a.pick_excluding(u, excluded)
        assert b.pick_excluding(u, excluded) == j
        assert j == -1 or (weights[j] > 0 and j not in excluded)


@SETTINGS
@given(st.lists(st.tuples(st.floats(0, 1e7, allow_nan=False), st.booleans(),
                          st.floats(0, 30, allow_nan=False)), max_size=60),
       st.floats(0.5, 120), st.integers(1, 20))
def test_latency_window_parity(both, samples, window_s, slices):
    py, c = both
    a, b = py.LatencyWindow(window_s, slices), c.LatencyWindow(window_s, slices)
    now = 1000.0
    for latency, ok, dt in samples:
        now += dt
        a.observe(latency, ok, now)
        b.observe(latency, ok, now)
        for q in (0.0, 0.5, 0.95, 0.99, 1.0):
            assert b.quantile(q, now) == a.quantile(q, now)
        assert b.error_rate(now) == a.error_rate(now)
        assert b.count(now) == a.count(now)


def test_random_weight_replacement_parity(both):
    py, c = both
    rng = random.Random(7)
    a, b = py.WeightedPicker([1.0]), c.WeightedPicker([1.0])
    for _ in range(200):
        ws = [rng.choice([0.0, rng.random(), rng.randint(0, 100)]) for _ in range(rng.randint(0, 30))]
        a.replace(ws)
        b.replace(ws)
        assert a.weights == b.weights
        for _ in range(20):
            u = rng.random()
            assert a.pick(u) == b.pick(u)
