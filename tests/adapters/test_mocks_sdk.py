"""The Anthropic and Gemini mocks are faithful: each provider's official SDK parses them."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import anthropic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from bench.mocks import MOCKS, AnthropicMock, GeminiMock, MockThread

WEATHER_TOOL = {"name": "get_weather", "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                 "required": ["city"]}}


@pytest.fixture(scope="module")
def anthropic_mock():
    with MockThread(AnthropicMock()) as mock:
        yield mock


@pytest.fixture(scope="module")
def gemini_mock():
    with MockThread(GeminiMock()) as mock:
        yield mock


def _claude(mock, **kw):
    return anthropic.Anthropic(base_url=mock.url, api_key="sk-ant-test", max_retries=0, **kw)


def _gemini(mock):
    return genai.Client(api_key="test-key", http_options=types.HttpOptions(base_url=mock.url))


def test_registered():
    assert MOCKS["anthropic"] is AnthropicMock and MOCKS["gemini"] is GeminiMock


# ---- Anthropic ---------------------------------------------------------------------------

def test_anthropic_message(anthropic_mock):
    msg = _claude(anthropic_mock).messages.create(
        model="claude-mock", max_tokens=100, messages=[{"role": "user", "content": "hello"}])
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("the quick")
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == 8
    assert msg.usage.cache_read_input_tokens == 0


def test_anthropic_request_id_and_rate_headers(anthropic_mock):
    raw = _claude(anthropic_mock, default_headers={"x-mock-behavior": '{"ratelimit_remaining": 7}'}) \
        .messages.with_raw_response.create(model="m", max_tokens=10,
                                           messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["request-id"].startswith("req_")
    assert raw.headers["anthropic-ratelimit-requests-remaining"] == "7"
    assert raw.parse().id.startswith("msg_")


def test_anthropic_cache_usage(anthropic_mock):
    long = "policy " * 3000
    msg = _claude(anthropic_mock).messages.create(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
        system=[{"type": "text", "text": long, "cache_control": {"type": "ephemeral"}}])
    assert msg.usage.cache_read_input_tokens == 1024
    assert msg.usage.input_tokens > 0


def test_anthropic_stream_text(anthropic_mock):
    client = _claude(anthropic_mock)
    with client.messages.stream(model="m", max_tokens=100,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "the quick brown fox jumps over a lazy"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 8 and final.usage.input_tokens > 0


def test_anthropic_stream_event_order(anthropic_mock):
    events = list(_claude(anthropic_mock).messages.create(
        model="m", max_tokens=100, stream=True, messages=[{"role": "user", "content": "hi"}]))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_stream_tool_use(anthropic_mock):
    client = _claude(anthropic_mock)
    with client.messages.stream(model="m", max_tokens=100, tools=[WEATHER_TOOL],
                                messages=[{"role": "user", "content": "weather in Oslo?"}]) as stream:
        final = stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use" and block.name == "get_weather"
    assert block.input == {"city": "Oslo"} and block.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"


def test_anthropic_tool_use_forced(anthropic_mock):
    other = {**WEATHER_TOOL, "name": "get_time"}
    msg = _claude(anthropic_mock).messages.create(
        model="m", max_tokens=100, tools=[WEATHER_TOOL, other],
        tool_choice={"type": "tool", "name": "get_time"},
        messages=[{"role": "user", "content": "time?"}])
    assert msg.content[0].name == "get_time"


def test_anthropic_forced_tool_input_matches_its_schema(anthropic_mock):
    schema = {"type": "object", "required": ["name", "n", "x", "ok", "kind", "items", "inner", "maybe"],
              "properties": {"name": {"type": "string"}, "n": {"type": "integer"}, "x": {"type": "number"},
                             "ok": {"type": "boolean"}, "kind": {"type": "string", "enum": ["b", "a"]},
                             "items": {"type": "array", "items": {"type": "integer"}},
                             "inner": {"type": "object", "properties": {"s": {"type": "string"}}},
                             "maybe": {"anyOf": [{"type": "null"}, {"type": "boolean"}]}}}
    tool = {"name": "answer", "input_schema": schema}
    msg = _claude(anthropic_mock).messages.create(
        model="m", max_tokens=100, tools=[tool], tool_choice={"type": "tool", "name": "answer"},
        messages=[{"role": "user", "content": "json"}])
    assert msg.content[0].input == {"name": "Oslo", "n": 1, "x": 1, "ok": True, "kind": "b", "items": [1],
                                    "inner": {"s": "Oslo"}, "maybe": None}
    assert msg.stop_reason == "tool_use"


@pytest.mark.parametrize("status,exc", [
    (400, anthropic.BadRequestError), (401, anthropic.AuthenticationError),
    (403, anthropic.PermissionDeniedError), (404, anthropic.NotFoundError),
    (429, anthropic.RateLimitError), (500, anthropic.InternalServerError),
    (529, anthropic.OverloadedError),
])
def test_anthropic_errors(anthropic_mock, status, exc):
    client = _claude(anthropic_mock, default_headers={"x-mock-behavior": f'{{"status": {status}}}'})
    with pytest.raises(exc) as info:
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == status
    assert info.value.body["type"] == "error"
    assert info.value.request_id.startswith("req_")


def test_anthropic_overloaded_mid_stream(anthropic_mock):
    client = _claude(anthropic_mock, default_headers={
        "x-mock-behavior": '{"fault": "cut", "error_message": "Overloaded"}'})
    with pytest.raises(anthropic.APIStatusError) as info:
        with client.messages.stream(model="m", max_tokens=100,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            list(stream.text_stream)
    assert "Overloaded" in str(info.value)


def _post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_anthropic_requires_version_and_max_tokens(anthropic_mock):
    status, body = _post(anthropic_mock.url + "/v1/messages",
                         {"model": "m", "max_tokens": 5, "messages": []}, {"x-api-key": "k"})
    assert status == 400 and "anthropic-version" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        _claude(anthropic_mock).messages.create(model="m", max_tokens=5, extra_body={"temperature": 1.5},
                                                messages=[{"role": "user", "content": "hi"}])


def test_anthropic_models(anthropic_mock):
    page = _claude(anthropic_mock).models.list()
    assert [m.id for m in page.data] == ["claude-mock"]


# ---- Gemini ------------------------------------------------------------------------------

def test_gemini_generate(gemini_mock):
    client = _gemini(gemini_mock)
    resp = client.models.generate_content(model="gemini-2.5-flash", contents="hello")
    assert resp.text == "the quick brown fox jumps over a lazy"
    cand = resp.candidates[0]
    assert cand.finish_reason == types.FinishReason.STOP
    usage = resp.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count == 8
    assert usage.total_token_count == usage.prompt_token_count + 8
    assert resp.model_version == "gemini-2.5-flash"


def test_gemini_thinking_usage(gemini_mock):
    client = _gemini(gemini_mock)
    resp = client.models.generate_content(
        model="gemini-2.5-flash", contents="hi",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(thinking_budget=512),
                                           system_instruction="be terse"))
    usage = resp.usage_metadata
    assert usage.thoughts_token_count == 16
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count + 16


def test_gemini_stream_text(gemini_mock):
    client = _gemini(gemini_mock)
    chunks = list(client.models.generate_content_stream(model="gemini-2.5-flash",
                                                                      contents="hello"))
    assert len(chunks) == 8
    assert "".join(c.text for c in chunks) == "the quick brown fox jumps over a lazy"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[0].candidates[0].finish_reason is None
    assert [c.usage_metadata.candidates_token_count for c in chunks] == list(range(1, 9))


def _weather_config(**kw):
    decl = types.FunctionDeclaration(
        name="get_weather", description="Weather in a city",
        parameters=types.Schema(type=types.Type.OBJECT,
                                properties={"city": types.Schema(type=types.Type.STRING)}))
    return types.GenerateContentConfig(tools=[types.Tool(function_declarations=[decl])],
                                       automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
                                       **kw)


def test_gemini_function_call(gemini_mock):
    client = _gemini(gemini_mock)
    resp = client.models.generate_content(
        model="gemini-2.5-flash", contents="weather in Oslo?", config=_weather_config())
    calls = resp.function_calls
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].args == {"city": "Oslo"}
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP


def test_gemini_stream_function_call(gemini_mock):
    client = _gemini(gemini_mock)
    chunks = list(client.models.generate_content_stream(
        model="gemini-2.5-flash", contents="weather in Oslo?", config=_weather_config()))
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert [(fc.name, fc.args) for fc in calls] == [("get_weather", {"city": "Oslo"})]


def test_gemini_tool_mode_none(gemini_mock):
    client = _gemini(gemini_mock)
    cfg = _weather_config(tool_config=types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(mode=types.FunctionCallingConfigMode.NONE)))
    resp = client.models.generate_content(model="g", contents="hi", config=cfg)
    assert resp.function_calls is None and resp.text


@pytest.mark.parametrize("status,exc,state", [
    (400, genai_errors.ClientError, "INVALID_ARGUMENT"), (403, genai_errors.ClientError, "PERMISSION_DENIED"),
    (404, genai_errors.ClientError, "NOT_FOUND"), (429, genai_errors.ClientError, "RESOURCE_EXHAUSTED"),
    (500, genai_errors.ServerError, "INTERNAL"), (503, genai_errors.ServerError, "UNAVAILABLE"),
])
def test_gemini_errors(gemini_mock, status, exc, state):
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=gemini_mock.url, headers={"x-mock-behavior": f'{{"status": {status}, "retry_after": 22}}'},
        retry_options=None))
    with pytest.raises(exc) as info:
        client.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert info.value.code == status and info.value.status == state
    assert info.value.details["error"]["details"][0]["retryDelay"] == "22s"


def test_gemini_missing_key_rejected(gemini_mock):
    status, body = _post(gemini_mock.url + "/v1beta/models/g:generateContent", {"contents": []}, {})
    assert status == 403 and body["error"]["status"] == "PERMISSION_DENIED"


def test_gemini_embeddings(gemini_mock):
    client = _gemini(gemini_mock)
    resp = client.models.embed_content(model="text-embedding-004", contents=["hello world", "bye"],
                                       config=types.EmbedContentConfig(output_dimensionality=64))
    assert len(resp.embeddings) == 2 and len(resp.embeddings[0].values) == 64


def test_gemini_models(gemini_mock):
    client = _gemini(gemini_mock)
    names = [m.name for m in client.models.list()]
    assert names == ["models/gemini-mock"]


# ---- fault and latency knobs shared with the OpenAI mock ----------------------------------

def test_anthropic_reset_fault(anthropic_mock):
    client = _claude(anthropic_mock, default_headers={"x-mock-behavior": '{"fault": "reset"}'})
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])


def test_anthropic_cut_fault_drops_the_connection(anthropic_mock):
    client = _claude(anthropic_mock, default_headers={"x-mock-behavior": '{"fault": "cut", "cut_after": 2}'})
    seen = []
    # the mock ends the connection mid-body (FIN), which the SDK's transport reports as such
    with pytest.raises(Exception, match="incomplete chunked read"):
        with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as s:
            seen.extend(s.text_stream)
    assert seen == ["the", " quick"]


def test_gemini_cut_fault_drops_the_connection(gemini_mock):
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=gemini_mock.url, headers={"x-mock-behavior": '{"fault": "cut", "cut_after": 3}'}))
    seen = []
    with pytest.raises(Exception):
        for chunk in client.models.generate_content_stream(model="g", contents="hi"):
            seen.append(chunk.text)
    assert seen == ["the", " quick", " brown"]


def test_latency_knobs(anthropic_mock, gemini_mock):
    import time
    client = _claude(anthropic_mock, default_headers={"x-mock-behavior": '{"latency_ms": 120}'})
    t0 = time.perf_counter()
    client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert time.perf_counter() - t0 >= 0.12
    client = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=gemini_mock.url, headers={"x-mock-behavior": '{"ttft_ms": 100, "chunk_delay_ms": 20, "chunks": 3}'}))
    t0 = time.perf_counter()
    assert "".join(c.text for c in client.models.generate_content_stream(model="g", contents="hi")) == "the quick brown"
    assert time.perf_counter() - t0 >= 0.14
