"""SSE parsing and framing, on both implementations."""
import pytest

CHAT_STREAM = (
    b": keepalive\n\n"
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
)


def _datas(parser, chunks):
    out = []
    for chunk in chunks:
        out.extend(ev.data for ev in parser.feed(chunk))
    return out


def test_whole_stream(kernels):
    assert _datas(kernels.SSEParser(), [CHAT_STREAM]) == [
        b'{"choices":[{"delta":{"content":"Hel"}}]}',
        b'{"choices":[{"delta":{"content":"lo"}}]}',
        b"[DONE]",
    ]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_any_chunk_size(kernels, size):
    chunks = [CHAT_STREAM[i:i + size] for i in range(0, len(CHAT_STREAM), size)]
    assert _datas(kernels.SSEParser(), chunks) == _datas(kernels.SSEParser(), [CHAT_STREAM])


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(kernels, eol):
    stream = b"event: delta" + eol + b"data: a" + eol + b"data: b" + eol + eol
    events = kernels.SSEParser().feed(stream)
    assert [(e.event, e.data) for e in events] == [("delta", b"a\nb")]


def test_crlf_split_across_chunks(kernels):
    p = kernels.SSEParser()
    assert p.feed(b"data: x\r") == []
    assert [e.data for e in p.feed(b"\n\r")] == [b"x"]  # \r + \n is one line end
    assert p.feed(b"\ndata: y\r") == []
    assert [e.data for e in p.feed(b"\n\r\n")] == [b"y"]


def test_fields(kernels):
    p = kernels.SSEParser()
    events = p.feed(b"id: 42\nretry: 3000\nevent: message\ndata\ndata:no-space\n\n"
                    b"data: second\n\n")
    assert [(e.event, e.data, e.id, e.retry) for e in events] == [
        ("message", b"\nno-space", "42", 3000),
        (None, b"second", "42", None),
    ]


def test_ignored_fields_and_bad_values(kernels):
    p = kernels.SSEParser()
    events = p.feed(b"id: a\x00b\nretry: soon\nfoo: bar\n: comment\ndata: x\n\n")
    assert [(e.id, e.retry, e.data) for e in events] == [(None, None, b"x")]


def test_event_without_data_is_not_dispatched(kernels):
    assert kernels.SSEParser().feed(b"event: ping\n\n") == []


def test_unterminated_event_dropped_on_close(kernels):
    p = kernels.SSEParser()
    assert p.feed(b"data: partial\n") == []
    assert p.close() == []
    assert p.feed(b"\n") == []


def test_long_line_in_many_chunks(kernels):
    p = kernels.SSEParser()
    payload = b"x" * 100_000
    for i in range(0, len(payload), 100):
        assert p.feed((b"data: " if i == 0 else b"") + payload[i:i + 100]) == []
    assert [e.data for e in p.feed(b"\n\n")] == [payload]


def test_accepts_bytearray_and_memoryview(kernels):
    p = kernels.SSEParser()
    assert [e.data for e in p.feed(bytearray(b"data: a\n\n"))] == [b"a"]
    assert [e.data for e in p.feed(memoryview(b"data: b\n\n"))] == [b"b"]


def test_encode_round_trip(kernels):
    for payload in [b"{}", b"line1\nline2", b"a\r\nb\rc", b""]:
        framed = kernels.encode_sse(payload, event="x")
        (ev,) = kernels.SSEParser().feed(framed)
        assert ev.event == "x"
        assert ev.data == payload.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert kernels.encode_sse(b"[DONE]") == b"data: [DONE]\n\n"
