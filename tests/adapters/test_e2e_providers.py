"""End to end: the openai SDK → a real `faregate serve` → each provider format's mock.

Whichever provider served it, the openai SDK sees the same shapes: text, tool calls,
streams with usage, finish reasons, errors.
"""
from __future__ import annotations

import json

import openai
import pytest

from bench.mocks import AnthropicMock, Behavior, GeminiMock, MockThread, OpenAIMock

KEY = "sk-faregate-e2e-providers"
MODELS = ["via-openai", "via-anthropic", "via-gemini"]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
MSG = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
ANSWER = "the quick brown fox jumps over"


@pytest.fixture(scope="module")
def stack(gateway_factory_module):
    mocks = {"openai": OpenAIMock(Behavior(chunks=6)), "anthropic": AnthropicMock(Behavior(chunks=6)),
             "gemini": GeminiMock(Behavior(chunks=6))}
    threads = {name: MockThread(m).__enter__() for name, m in mocks.items()}
    try:
        config = {
            "keys": [{"key": KEY, "id": "e2e"}],
            "models": [
                {"name": "via-openai", "provider": "openai", "model": "gpt-4o-mini",
                 "base_url": threads["openai"].url + "/v1", "api_key": "up-openai"},
                {"name": "via-anthropic", "provider": "anthropic", "model": "claude-sonnet-4-5",
                 "base_url": threads["anthropic"].url, "api_key": "up-anthropic",
                 "options": {"auto_cache": True}},
                {"name": "via-gemini", "provider": "gemini", "model": "gemini-2.5-flash",
                 "base_url": threads["gemini"].url, "api_key": "up-gemini"},
                {"name": "gemini-embed", "provider": "gemini", "model": "text-embedding-004",
                 "base_url": threads["gemini"].url, "api_key": "up-gemini"},
            ],
        }
        gw = gateway_factory_module(config)
        yield gw, threads
    finally:
        for t in threads.values():
            t.__exit__(None, None, None)


@pytest.fixture(scope="module")
def gateway_factory_module():
    from gateway import Gateway
    started: list = []

    def make(config):
        gw = Gateway(config)
        started.append(gw)
        return gw.start()

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def client(stack):
    gw, _ = stack
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0, timeout=20)


UPSTREAM_MODEL = {"via-openai": ("openai", "gpt-4o-mini"), "via-anthropic": ("anthropic", "claude-sonnet-4-5"),
                  "via-gemini": ("gemini", "gemini-2.5-flash")}


@pytest.fixture
def misbehave(stack):
    """misbehave(public model, **behavior): the mock behind it behaves so for this test."""
    touched = []

    def set_(model, **patch):
        provider, upstream_model = UPSTREAM_MODEL[model]
        mock = stack[1][provider]
        mock.call(lambda: mock.provider.model_behavior.__setitem__(upstream_model, patch))
        touched.append(mock)

    yield set_
    for mock in touched:
        mock.call(mock.provider.model_behavior.clear)


def _upstream(stack, provider):
    mock = stack[1][provider]
    return mock.call(lambda: (mock.provider.stats["last_request"], mock.provider.stats["last_headers"]))


@pytest.mark.parametrize("model", MODELS)
def test_text(client, model):
    r = client.chat.completions.with_raw_response.create(model=model, messages=MSG)
    c = r.parse()
    assert c.object == "chat.completion"
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].message.content == ANSWER
    assert c.choices[0].finish_reason == "stop"
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens == 6
    assert c.usage.total_tokens >= c.usage.prompt_tokens + c.usage.completion_tokens
    assert r.headers["x-faregate-provider"] == model.split("-")[1]


@pytest.mark.parametrize("model", MODELS)
def test_stream_text_with_usage(client, model):
    chunks = list(client.chat.completions.create(model=model, messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6


@pytest.mark.parametrize("model", MODELS)
def test_stream_without_usage(client, model):
    chunks = list(client.chat.completions.create(model=model, messages=MSG, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)


@pytest.mark.parametrize("model", MODELS)
def test_tool_call(client, model):
    c = client.chat.completions.create(model=model, messages=MSG, tools=TOOLS, tool_choice="required")
    msg = c.choices[0].message
    assert c.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    (call,) = msg.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert call.id


@pytest.mark.parametrize("model", MODELS)
def test_stream_tool_call(client, model):
    chunks = list(client.chat.completions.create(model=model, messages=MSG, tools=TOOLS, stream=True,
                                                 stream_options={"include_usage": True}))
    calls: dict[int, dict] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            entry["id"] = entry["id"] or tc.id
            entry["name"] = entry["name"] or (tc.function.name if tc.function else None)
            entry["arguments"] += (tc.function.arguments or "") if tc.function else ""
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage.prompt_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_tool_round_trip(client, model, stack):
    first = client.chat.completions.create(model=model, messages=MSG, tools=TOOLS, tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    messages = MSG + [first.choices[0].message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 4}'}]
    second = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, tool_choice="none")
    assert second.choices[0].message.content == ANSWER
    provider = model.split("-")[1]
    body, _ = _upstream(stack, provider)
    if provider == "anthropic":
        result = body["messages"][-1]["content"][0]
        assert result == {"type": "tool_result", "tool_use_id": call.id, "content": '{"temp_c": 4}'}
    elif provider == "gemini":
        assert body["contents"][-1]["parts"][0] == {
            "functionResponse": {"name": "get_weather", "response": {"temp_c": 4}}}


def test_anthropic_upstream_request(client, stack):
    client.chat.completions.create(model="via-anthropic", messages=MSG, tools=TOOLS, temperature=1.5)
    body, headers = _upstream(stack, "anthropic")
    assert headers["x-api-key"] == "up-anthropic" and headers["anthropic-version"] == "2023-06-01"
    assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] == 4096 and body["temperature"] == 1.0
    assert body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}


def test_anthropic_cache_usage_reaches_the_client(client):
    c = client.chat.completions.create(model="via-anthropic", messages=MSG)
    assert c.usage.prompt_tokens_details.cached_tokens > 0  # auto_cache marked 2 blocks
    assert c.usage.prompt_tokens > c.usage.prompt_tokens_details.cached_tokens


def test_gemini_upstream_request(client, stack):
    client.chat.completions.create(model="via-gemini", messages=MSG, max_tokens=50, stop="END")
    body, headers = _upstream(stack, "gemini")
    assert headers["x-goog-api-key"] == "up-gemini"
    assert body["systemInstruction"] == {"parts": [{"text": "You are terse."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 50, "stopSequences": ["END"]}


@pytest.mark.parametrize("model,status,exc", [
    ("via-anthropic", 529, openai.InternalServerError), ("via-anthropic", 429, openai.RateLimitError),
    ("via-anthropic", 401, openai.AuthenticationError), ("via-gemini", 429, openai.RateLimitError),
    ("via-gemini", 400, openai.BadRequestError), ("via-gemini", 503, openai.InternalServerError),
])
def test_errors(client, misbehave, model, status, exc):
    misbehave(model, status=status)
    with pytest.raises(exc) as info:
        client.chat.completions.create(model=model, messages=MSG)
    assert info.value.status_code == status
    assert set(info.value.body) >= {"message", "type", "code"}


@pytest.mark.parametrize("model", ["via-anthropic", "via-gemini"])
def test_stream_cut_ends_with_an_error_event(client, misbehave, model):
    misbehave(model, fault="cut", cut_after=2)
    text = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model=model, messages=MSG, stream=True):
            text.append(chunk.choices[0].delta.content or "")
    assert "".join(text) == "the quick"


def test_anthropic_overloaded_mid_stream(client, misbehave):
    misbehave("via-anthropic", fault="cut", cut_after=3, error_message="Overloaded")
    with pytest.raises(openai.APIError) as info:
        for _ in client.chat.completions.create(model="via-anthropic", messages=MSG, stream=True):
            pass
    assert "Overloaded" in str(info.value)


def test_gemini_embeddings(client):
    r = client.embeddings.create(model="gemini-embed", input=["hello world", "bye"], dimensions=32)
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) == 32


def test_anthropic_has_no_embeddings(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="via-anthropic", input="hi")
    assert info.value.status_code == 400 and "embeddings" in info.value.message.lower()


WEATHER_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"},
                                     "windy": {"type": "boolean"}, "tags": {"type": "array", "items": {"type": "string"}}},
    "required": ["city", "temp_c", "windy", "tags"], "additionalProperties": False}}}
WEATHER_JSON = {"city": "Oslo", "temp_c": 1, "windy": True, "tags": ["Oslo"]}


def test_anthropic_json_schema_response_format(client, stack):
    c = client.chat.completions.create(model="via-anthropic", messages=MSG, response_format=WEATHER_FORMAT)
    assert json.loads(c.choices[0].message.content) == WEATHER_JSON
    assert c.choices[0].finish_reason == "stop" and not c.choices[0].message.tool_calls
    body, _ = _upstream(stack, "anthropic")
    assert body["tool_choice"]["type"] == "tool"
    assert body["tools"][-1]["input_schema"] == WEATHER_FORMAT["json_schema"]["schema"]


def test_anthropic_json_schema_response_format_stream(client):
    chunks = list(client.chat.completions.create(model="via-anthropic", messages=MSG, stream=True,
                                                 response_format=WEATHER_FORMAT))
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and json.loads("".join(pieces)) == WEATHER_JSON
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
