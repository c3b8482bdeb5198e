"""A stored answer replayed as SSE must parse in the openai SDK exactly like a live stream,
and a relayed stream must assemble back into the answer."""
from __future__ import annotations

import openai
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from aiohttp import web

from proxy.cache.replay import StreamAssembler, replay_sse, split_text

COMPLETION = {
    "id": "chatcmpl-abc", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
    "system_fingerprint": "fp_1",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Hello there! This answer is long enough "
                                                              "to be split into several chunks, über 🚀."}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32},
}
TOOLS = {
    "id": "chatcmpl-t", "object": "chat.completion", "created": 1700000001, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                 "message": {"role": "assistant", "content": None, "tool_calls": [
                     {"id": "call_1", "type": "function",
                      "function": {"name": "get_weather", "arguments": orjson.dumps(
                          {"city": "Paris", "unit": "celsius", "details": "x" * 150}).decode()}},
                     {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}}],
    "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
}


@pytest.fixture
async def replay_server():
    async def chat(request):
        body = await request.json()
        stored = TOOLS if body.get("tools") else COMPLETION
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return web.Response(body=replay_sse(stored, include), content_type="text/event-stream")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def test_split_text_keeps_every_character():
    text = COMPLETION["choices"][0]["message"]["content"]
    parts = split_text(text)
    assert "".join(parts) == text and len(parts) > 3
    assert all(len(p) < 40 for p in parts)
    assert split_text("") == [] and split_text("hi") == ["hi"]


@pytest.mark.parametrize("include_usage", [False, True])
async def test_openai_sdk_parses_replayed_text(replay_server, include_usage):
    client = openai.AsyncOpenAI(base_url=replay_server, api_key="k", max_retries=0)
    kw = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = await client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                  messages=[{"role": "user", "content": "hi"}], **kw)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == COMPLETION["choices"][0]["message"]["content"]
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert all(c.id == "chatcmpl-abc" and c.model == "gpt-4o-mini" for c in chunks)
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 32
    else:
        assert all(c.usage is None for c in chunks)
    await client.close()


async def test_openai_sdk_parses_replayed_tool_calls(replay_server):
    client = openai.AsyncOpenAI(base_url=replay_server, api_key="k", max_retries=0)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "weather?"}],
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {}}}])
    calls: dict[int, dict] = {}
    finish = None
    async for c in stream:
        for tc in c.choices[0].delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
            slot["id"] = tc.id or slot["id"]
            slot["name"] += (tc.function.name or "") if tc.function else ""
            slot["args"] += (tc.function.arguments or "") if tc.function else ""
        finish = c.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    want = TOOLS["choices"][0]["message"]["tool_calls"]
    assert [(v["id"], v["name"], v["args"]) for _, v in sorted(calls.items())] == \
        [(w["id"], w["function"]["name"], w["function"]["arguments"]) for w in want]
    await client.close()


@pytest.mark.parametrize("stored", [COMPLETION, TOOLS], ids=["text", "tools"])
@pytest.mark.parametrize("step", [1, 7, 10_000])
def test_assembler_round_trip(stored, step):
    data = replay_sse(stored, include_usage=True)
    asm = StreamAssembler()
    for i in range(0, len(data), step):  # any split of the byte stream
        asm.feed(data[i:i + step])
    assert asm.result() == stored


def test_assembler_refuses_incomplete_or_failed_streams():
    data = replay_sse(COMPLETION, include_usage=False)
    cut = StreamAssembler()
    cut.feed(data[: data.index(b'"finish_reason":"stop"')])
    assert cut.result() is None
    no_done = StreamAssembler()
    no_done.feed(data.replace(b"data: [DONE]\n\n", b""))
    assert no_done.result() is None
    err = StreamAssembler()
    err.feed(data.replace(b"data: [DONE]", b'data: {"error": {"message": "cut"}}\n\ndata: [DONE]'))
    assert err.result() is None
    ok = StreamAssembler()
    ok.feed(data)
    assert ok.result() == {k: v for k, v in COMPLETION.items() if k != "usage"}


_TRICKY = st.sampled_from(['"index":0', '"role"', 'plain', '\\"tool_calls\\"', '"index":1,', 'é😀', '"error"'])


@st.composite
def _chunk_stream(draw):
    n_choices = draw(st.integers(1, 2))
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
               "choices": [{"index": i, "delta": {"role": "assistant", "content": ""}} for i in range(n_choices)]}]
    for _ in range(draw(st.integers(0, 12))):
        i = draw(st.integers(0, n_choices - 1))
        kind = draw(st.sampled_from(["content", "content", "tool", "refusal", "role"]))
        if kind == "content":
            delta = {"content": draw(st.text(max_size=6)) + draw(_TRICKY)}
        elif kind == "tool":
            delta = {"tool_calls": [{"index": 0, "id": "t", "type": "function",
                                     "function": {"name": "f", "arguments": draw(_TRICKY)}}]}
        elif kind == "refusal":
            delta = {"refusal": draw(_TRICKY)}
        else:
            delta = {"role": "assistant"}
        chunks.append({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": i, "delta": delta, "finish_reason": None}]})
    for i in range(n_choices):
        chunks.append({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                       "choices": [{"index": i, "delta": {}, "finish_reason": "stop"}]})
    if draw(st.booleans()):
        chunks.append({"id": "c1", "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2,
                                                            "total_tokens": 3}})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


@settings(max_examples=300, deadline=None)
@given(_chunk_stream(), st.integers(1, 64))
def test_assembler_fast_path_agrees_with_the_full_parse(data, step):
    """feed() takes most chunks through extract_chunk's shape; it must rebuild what reading
    every chunk whole does."""
    from proxy._fast import SSEParser

    fast = StreamAssembler()
    for i in range(0, len(data), step):
        fast.feed(data[i:i + step])
    slow = StreamAssembler()
    for ev in SSEParser().feed(data):
        if ev.data == b"[DONE]":
            slow.finish()
        else:
            slow.chunk(orjson.loads(ev.data))
    assert fast.result() == slow.result()
    assert slow.result() is not None
