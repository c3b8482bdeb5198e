"""extract_chunk on realistic provider chunks, on both implementations."""
import orjson
import pytest


def test_content_delta(kernels):
    data = b'{"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi \\"there\\" \\u00e9\\n"},"finish_reason":null}]}'
    assert kernels.extract_chunk(data) == ('Hi "there" \u00e9\n', "", None, None, False, kernels.SHAPE_SIMPLE)


def test_tool_call_arguments(kernels):
    data = orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"name": "get_weather", "arguments": '{"city": '}},
        {"index": 1, "function": {"arguments": '"Paris"}'}}]}}]})
    assert kernels.extract_chunk(data) == ("", '{"city": "Paris"}', None, None, False, kernels.SHAPE_CHOICES)


def test_finish_and_usage(kernels):
    data = orjson.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
                                   "prompt_tokens_details": {"cached_tokens": 4}}})
    content, args, finish, usage, err, shape = kernels.extract_chunk(data)
    assert (content, args, finish, err, shape) == ("", "", "stop", False, kernels.SHAPE_SIMPLE)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 4}


def test_usage_only_chunk_with_empty_choices(kernels):
    data = b'{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'
    assert kernels.extract_chunk(data)[3] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def test_null_and_empty_usage(kernels):
    assert kernels.extract_chunk(b'{"choices":[],"usage":null}')[3] is None
    assert kernels.extract_chunk(b'{"choices":[],"usage":{}}')[3] is None


def test_error_payload(kernels):
    data = b'{"error":{"message":"overloaded","type":"server_error","code":529}}'
    assert kernels.extract_chunk(data) == ("", "", None, None, True, kernels.SHAPE_OTHER)
    assert kernels.extract_chunk(b'{"error":null,"choices":[]}')[4] is False


def test_several_choices_and_duplicate_keys(kernels):
    data = (b'{"choices":[{"delta":{"content":"a","content":"b"}},'
            b'{"delta":{"content":"c"},"finish_reason":"length"}],"choices":[{"delta":{"content":"d"}}]}')
    assert kernels.extract_chunk(data) == ("d", "", None, None, False, kernels.SHAPE_SIMPLE)


def test_escaped_key_and_exponent_fall_back(kernels):
    data = b'{"choices":[{"delta":{"c\\u006fntent":"x","n":1e5}}]}'
    assert kernels.extract_chunk(data) == ("x", "", None, None, False, kernels.SHAPE_CHOICES)


@pytest.mark.parametrize("bad", [b"", b"{", b'{"a":}', b'{"a":1,}', b"\xef\xbb\xbf{}", b'{"a":"\xff"}',
                                 b'{"a":"\\ud800"}', b'{"a":01}', b"{} x", b'{"a":NaN}'])
def test_invalid_json_raises(kernels, bad):
    with pytest.raises(ValueError):
        kernels.extract_chunk(bad)


def test_non_object_payloads(kernels):
    for data in [b"[1,2]", b'"[DONE]"', b"null", b"3"]:
        assert kernels.extract_chunk(data) == ("", "", None, None, False, kernels.SHAPE_OTHER)


@pytest.mark.parametrize("data, shape", [
    # one choice, index 0 (or absent, or -0), content and nulls only: what the relay and the
    # cache's assembler take without reading the object
    (b'{"id":"c","choices":[{"index":0,"delta":{"content":"x"},"logprobs":null,"finish_reason":null}],"usage":null}', 2),
    (b'{"choices":[{"index":-0,"delta":{"role":"assistant","content":"","refusal":null}}]}', 2),
    (b'{"choices":[{"index":0,"delta":{"content":"x","reasoning_content":null}}]}', 2),
    (b'{"choices":[{"delta":null,"finish_reason":"stop"}]}', 2),
    (b'{"choices":[{"index":0}],"obfuscation":"abc","provider":"p"}', 2),
    (b'{"choices":[{"index":1,"index":0,"delta":{}}]}', 2),            # the last duplicate counts
    (b'{"choices":[{"delta":{"role":"\\u0061ssistant"}}]}', 2),
    # choices the relay passes on, which the assembler must read whole
    (b'{"choices":[{"index":0.0,"delta":{"content":"x"}}]}', 1),       # a float index
    (b'{"choices":[{"index":true,"delta":{}}]}', 1),
    (b'{"choices":[{"index":1,"delta":{"content":"x"}}]}', 1),
    (b'{"choices":[{"delta":{"role":"user"}}]}', 1),
    (b'{"choices":[{"delta":{"content":5}}]}', 1),
    (b'{"choices":[{"delta":{"content":"a","content":5}}]}', 1),       # duplicate: the last counts
    (b'{"choices":[{"delta":{"content":5,"content":"a"}}]}', 2),
    (b'{"choices":[{"delta":{"reasoning_content":"hm"}}]}', 1),
    (b'{"choices":[{"delta":{"tool_calls":[]}}]}', 1),
    (b'{"choices":[{"delta":[]}]}', 1),
    (b'{"choices":[{},{}]}', 1),
    (b'{"choices":[{},1]}', 1),
    # anything else: read whole
    (b'{"choices":[]}', 0),
    (b'{"choices":[1]}', 0),
    (b'{"choices":{}}', 0),
    (b'{"choices":[{}],"error":null}', 0),                             # OpenRouter's errors ride here
    (b'{"choices":[{}],"x_groq":{"usage":{}}}', 0),                    # Groq's usage rides here
    (b'{"choices":[{}],"choices":[]}', 0),
    (b'{"choices":[],"choices":[{}]}', 2),
])
def test_shape(kernels, data, shape):
    assert kernels.extract_chunk(data)[5] == shape


def test_compiled_fast_path_needs_no_fallback(both, monkeypatch):
    """Typical provider chunks are answered by the scanner, not by the orjson reference."""
    py, c = both

    def boom(data):
        raise AssertionError(f"fell back on {data!r}")

    chunks = [
        b'{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}',
        '{"choices":[{"index":0,"delta":{"content":"caf\u00e9 \\u00e9 \\n \\"q\\" 你好"},"finish_reason":null}]}'.encode(),
        b'{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\\"a\\":"}}]}}]}',
        b'{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}',
        b'{"error":{"message":"rate limited","type":"rate_limit_error","code":"429"}}',
        b' {\n  "choices" : [ ] ,\n "x": [1.5, -2, true, false, null, {}, []]\n} \n',
    ]
    want = [py.extract_chunk(d) for d in chunks]
    monkeypatch.setattr(py, "extract_chunk", boom)
    assert [c.extract_chunk(d) for d in chunks] == want
