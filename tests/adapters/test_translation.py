"""The translation rules, one assertion at a time (the golden files pin whole payloads)."""
from __future__ import annotations

import json
import random

import orjson
import pytest

from adapters import PROVIDERS, REGISTRY, Deployment, RequestRejected, get_adapter, provider_defaults
from adapters.anthropic import DEFAULT_MAX_TOKENS, JSON_TOOL, STOP_REASONS
from adapters.errors import parse_duration, parse_retry_after
from adapters.gemini import FINISH_REASONS
from golden import deployment, random_splits, run_stream, sse_events

USER = {"role": "user", "content": "hi"}


def body_of(provider: str, body: dict, *, stream: bool = False, **dep) -> dict:
    req = get_adapter(provider).chat_request(deployment(provider, dep), body, stream=stream)
    return orjson.loads(req.body)


# ---- registry and provider defaults ------------------------------------------------------

def test_registry_covers_every_provider_name():
    expected = {"openai", "azure", "deepseek", "mistral", "groq", "together", "fireworks", "openrouter",
                "xai", "qwen", "ollama", "vllm", "llamacpp", "anthropic", "gemini"}
    assert set(REGISTRY) == set(PROVIDERS) == expected
    for name, adapter in REGISTRY.items():
        assert adapter.name == name
        assert get_adapter(name) is adapter
    assert get_adapter("some-new-openai-compatible").name == "openai"


def test_provider_defaults():
    info = provider_defaults("anthropic")
    assert (info.format, info.key_env, info.requires_key, info.auth) == ("anthropic", "ANTHROPIC_API_KEY", True, "x-api-key")
    assert provider_defaults("gemini").key_env == "GEMINI_API_KEY"
    assert provider_defaults("ollama").requires_key is False
    assert provider_defaults("azure").base_url == "" and provider_defaults("azure").auth == "api-key"
    for name, info in PROVIDERS.items():
        assert REGISTRY[name].name == name and info.name == name
        assert info.base_url == "" or info.base_url.startswith(("https://", "http://localhost"))
    with pytest.raises(KeyError, match="known providers"):
        provider_defaults("nope")


# ---- Anthropic requests ------------------------------------------------------------------

def test_anthropic_system_messages_are_joined_and_hoisted():
    out = body_of("anthropic", {"messages": [{"role": "system", "content": "A"}, USER,
                                             {"role": "developer", "content": "B"}, USER]})
    assert out["system"] == "A\n\nB"
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                            {"type": "text", "text": "hi"}]}]


def test_anthropic_max_tokens_default_and_client_value():
    assert body_of("anthropic", {"messages": [USER]})["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body_of("anthropic", {"messages": [USER], "max_tokens": 7})["max_tokens"] == 7
    assert body_of("anthropic", {"messages": [USER], "max_completion_tokens": 9})["max_tokens"] == 9
    assert body_of("anthropic", {"messages": [USER]}, options={"max_tokens": 99})["max_tokens"] == 99


@pytest.mark.parametrize("given,sent", [(0, 0.0), (0.7, 0.7), (1.0, 1.0), (1.5, 1.0), (2, 1.0)])
def test_anthropic_temperature_clamped(given, sent):
    assert body_of("anthropic", {"messages": [USER], "temperature": given})["temperature"] == sent


@pytest.mark.parametrize("choice,parallel,expected", [
    ("auto", None, {"type": "auto"}), ("none", None, {"type": "none"}), ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_anthropic_tool_choice(choice, parallel, expected):
    body = {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert body_of("anthropic", body).get("tool_choice") == expected


def test_anthropic_images():
    out = body_of("anthropic", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]})
    blocks = out["messages"][0]["content"]
    assert blocks[0] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
    assert blocks[1] == {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}


def test_anthropic_consecutive_tool_results_make_one_user_turn():
    messages = [USER, {"role": "assistant", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "t2", "type": "function", "function": {"name": "b", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "1"}, {"role": "tool", "tool_call_id": "t2", "content": "2"}]
    out = body_of("anthropic", {"messages": messages})
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"][1]["input"] == {"_raw_arguments": "not json"}
    assert [b["tool_use_id"] for b in out["messages"][2]["content"]] == ["t1", "t2"]


def test_anthropic_auto_cache_respects_existing_breakpoints():
    system = [{"type": "text", "text": f"s{i}", "cache_control": {"type": "ephemeral"}} for i in range(4)]
    out = body_of("anthropic", {"messages": [{"role": "system", "content": system}, USER],
                                "tools": [{"type": "function", "function": {"name": "f"}}]},
                  options={"auto_cache": True})
    assert "cache_control" not in out["tools"][0]  # already 4 breakpoints: the limit


def test_anthropic_rejects_what_it_cannot_do():
    with pytest.raises(RequestRejected) as info:
        body_of("anthropic", {"messages": [USER], "n": 3})
    assert info.value.error.status == 400 and not info.value.error.retryable
    with pytest.raises(RequestRejected):
        get_adapter("anthropic").embeddings_request(deployment("anthropic"), {"input": "x"})
    with pytest.raises(RequestRejected):
        body_of("anthropic", {"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]})


def test_anthropic_url_and_headers():
    adapter = get_adapter("anthropic")
    for base in ("https://api.anthropic.com", "https://api.anthropic.com/", "https://api.anthropic.com/v1"):
        req = adapter.chat_request(deployment("anthropic", {"base_url": base}), {"messages": [USER]}, stream=True)
        assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.headers["x-api-key"] == "sk-test" and req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers


def test_anthropic_stop_reasons_cover_the_documented_set():
    assert STOP_REASONS == {"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
                            "max_tokens": "length", "model_context_window_exceeded": "length",
                            "tool_use": "tool_calls", "refusal": "content_filter"}


def test_anthropic_usage_follows_openai_convention():
    data = orjson.dumps({"id": "m", "type": "message", "model": "c", "content": [], "stop_reason": "end_turn",
                         "usage": {"input_tokens": 10, "cache_read_input_tokens": 100,
                                   "cache_creation_input_tokens": 50, "output_tokens": 5}})
    usage = get_adapter("anthropic").chat_response(deployment("anthropic"), data)["usage"]
    assert usage["prompt_tokens"] == 160 and usage["total_tokens"] == 165
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 50}


# ---- Anthropic JSON mode (response_format as a forced tool) ------------------------------

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp_c": {"type": "number"}},
          "required": ["city", "temp_c"]}
JSON_SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_anthropic_json_schema_becomes_a_forced_tool():
    out = body_of("anthropic", {"messages": [USER], "response_format": JSON_SCHEMA_FORMAT})
    (tool,) = out["tools"]
    assert tool["name"] == JSON_TOOL and tool["input_schema"] == SCHEMA
    assert "weather" in tool["description"]
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert "system" not in out


def test_anthropic_json_object_becomes_a_forced_object_tool():
    out = body_of("anthropic", {"messages": [USER], "response_format": {"type": "json_object"}}, stream=True)
    assert out["tools"] == [{"name": JSON_TOOL, "description": "Respond with a JSON object",
                             "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_anthropic_text_response_format_changes_nothing():
    assert body_of("anthropic", {"messages": [USER], "response_format": {"type": "text"}}) == \
        body_of("anthropic", {"messages": [USER]})


@pytest.mark.parametrize("choice,expected", [
    (None, None), ("auto", {"type": "auto"}), ("required", {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ("none", {"type": "tool", "name": JSON_TOOL}),
])
def test_anthropic_json_mode_with_client_tools_keeps_them_and_their_choice(choice, expected):
    body = {"messages": [USER], "tools": [WEATHER_TOOL], "response_format": JSON_SCHEMA_FORMAT}
    if choice is not None:
        body["tool_choice"] = choice
    out = body_of("anthropic", body)
    assert [t["name"] for t in out["tools"]] == ["get_weather", JSON_TOOL]
    assert out.get("tool_choice") == expected
    if choice != "none":  # the model chooses, so it is told how to answer
        assert JSON_TOOL in out["system"]


def test_anthropic_json_mode_with_thinking_is_not_forced():
    out = body_of("anthropic", {"messages": [USER], "reasoning_effort": "low",
                                "response_format": {"type": "json_object"}})
    assert out["thinking"]["type"] == "enabled" and "tool_choice" not in out
    assert [t["name"] for t in out["tools"]] == [JSON_TOOL] and JSON_TOOL in out["system"]


@pytest.mark.parametrize("fmt", [
    "json", ["json_object"], {"type": "yaml"}, {}, {"type": "json_schema"},
    {"type": "json_schema", "json_schema": {"name": "x"}},
    {"type": "json_schema", "json_schema": {"name": "x", "schema": "{}"}},
    {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}},
])
def test_anthropic_malformed_response_format_is_a_400_naming_it(fmt):
    with pytest.raises(RequestRejected) as exc:
        body_of("anthropic", {"messages": [USER], "response_format": fmt})
    assert exc.value.error.status == 400 and exc.value.error.body["error"]["param"] == "response_format"


def test_anthropic_reserved_tool_name_is_rejected():
    with pytest.raises(RequestRejected) as exc:
        body_of("anthropic", {"messages": [USER], "tools": [
            {"type": "function", "function": {"name": JSON_TOOL}}]})
    assert exc.value.error.body["error"]["param"] == "tools"


def _message(content: list, stop_reason: str) -> bytes:
    return orjson.dumps({"id": "m", "type": "message", "model": "c", "content": content,
                         "stop_reason": stop_reason, "usage": {"input_tokens": 1, "output_tokens": 1}})


@pytest.mark.parametrize("stop_reason,finish", [("tool_use", "stop"), ("end_turn", "stop"),
                                                 ("max_tokens", "length")])
def test_anthropic_json_tool_call_is_unwrapped_into_content(stop_reason, finish):
    answer = {"city": "Oslo", "temp_c": 4.5, "tags": ["ø", "✓"], "nested": {"ok": True}}
    data = _message([{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": answer}], stop_reason)
    choice = get_adapter("anthropic").chat_response(deployment("anthropic"), data)["choices"][0]
    assert json.loads(choice["message"]["content"]) == answer
    assert choice["message"]["content"] == json.dumps(answer, separators=(",", ":"), ensure_ascii=False)
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == finish


def test_anthropic_other_tool_calls_stay_tool_calls_next_to_the_json_answer():
    data = _message([{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                     {"type": "tool_use", "id": "toolu_2", "name": JSON_TOOL, "input": {"a": 1}}], "tool_use")
    choice = get_adapter("anthropic").chat_response(deployment("anthropic"), data)["choices"][0]
    assert choice["message"]["content"] == '{"a":1}'
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather"]
    assert choice["finish_reason"] == "tool_calls"


def _sse(name: str, obj: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


def _json_tool_stream(args: str, stop_reason: str) -> bytes:
    pieces = [args[i:i + 5] for i in range(0, len(args), 5)]
    out = [_sse("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "model": "c", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {}}})]
    out += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                         "delta": {"type": "input_json_delta", "partial_json": p}})
            for p in [""] + pieces]
    out += [_sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
            _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason},
                                   "usage": {"output_tokens": 9}}),
            _sse("message_stop", {"type": "message_stop"})]
    return b"".join(out)


@pytest.mark.parametrize("stop_reason,finish", [("tool_use", "stop"), ("max_tokens", "length")])
def test_anthropic_stream_json_tool_becomes_content_under_any_chunking(stop_reason, finish):
    args = json.dumps({"city": "Oslo", "temp_c": 4.5, "note": "ø ✓ \\ \"q\""}, ensure_ascii=False)
    raw = _json_tool_stream(args, stop_reason)
    rng = random.Random(7)
    for splits in [None, list(range(1, len(raw)))] + [random_splits(len(raw), rng) for _ in range(30)]:
        out, translator = run_stream("anthropic", raw, include_usage=False, splits=splits)
        events = [e for e in sse_events(out) if e != "[DONE]"]
        deltas = [e["choices"][0]["delta"] for e in events]
        assert not any("tool_calls" in d for d in deltas)
        assert json.loads("".join(d.get("content") or "" for d in deltas)) == json.loads(args)
        assert [e["choices"][0]["finish_reason"] for e in events if e["choices"][0]["finish_reason"]] == [finish]
        assert translator.finish_reason == finish and translator.completion_text == args


# ---- Gemini requests ---------------------------------------------------------------------

def test_gemini_roles_and_system_instruction():
    out = body_of("gemini", {"messages": [{"role": "system", "content": "S"}, USER,
                                          {"role": "assistant", "content": "yo"}, USER, USER]})
    assert out["systemInstruction"] == {"parts": [{"text": "S"}]}
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    assert out["contents"][2]["parts"] == [{"text": "hi"}, {"text": "hi"}]


@pytest.mark.parametrize("choice,config", [
    ("auto", {"mode": "AUTO"}), ("none", {"mode": "NONE"}), ("required", {"mode": "ANY"}),
    ({"type": "function", "function": {"name": "f"}}, {"mode": "ANY", "allowedFunctionNames": ["f"]}),
])
def test_gemini_tool_choice(choice, config):
    out = body_of("gemini", {"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}],
                             "tool_choice": choice})
    assert out["toolConfig"] == {"functionCallingConfig": config}
    assert out["tools"] == [{"functionDeclarations": [{"name": "f"}]}]


def test_gemini_generation_config_and_json_mode():
    out = body_of("gemini", {"messages": [USER], "max_tokens": 5, "temperature": 1.7, "top_p": 0.5,
                             "stop": ["a", "b"], "seed": 1, "n": 2, "response_format": {"type": "json_object"}})
    assert out["generationConfig"] == {"maxOutputTokens": 5, "temperature": 1.7, "topP": 0.5, "seed": 1,
                                       "candidateCount": 2, "stopSequences": ["a", "b"],
                                       "responseMimeType": "application/json"}


def test_gemini_tool_results_find_their_function_by_id():
    messages = [USER, {"role": "assistant", "tool_calls": [
        {"id": "call_x", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}]},
        {"role": "tool", "tool_call_id": "call_x", "content": "[1, 2]"}]
    out = body_of("gemini", {"messages": messages})
    assert out["contents"][1]["parts"] == [{"functionCall": {"name": "lookup", "args": {"q": 1}}}]
    assert out["contents"][2]["parts"] == [{"functionResponse": {"name": "lookup", "response": {"result": [1, 2]}}}]


def test_gemini_generated_ids_round_trip_with_thought_signature():
    adapter = get_adapter("gemini")
    data = orjson.dumps({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "SIG=="}]}, "finishReason": "STOP"}]})
    call = adapter.chat_response(deployment("gemini"), data)["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")
    out = body_of("gemini", {"messages": [USER, {"role": "assistant", "tool_calls": [call]},
                                          {"role": "tool", "tool_call_id": call["id"], "content": "ok"}]})
    assert out["contents"][1]["parts"][0]["thoughtSignature"] == "SIG=="
    assert out["contents"][2]["parts"][0]["functionResponse"]["name"] == "f"


def test_gemini_urls():
    adapter = get_adapter("gemini")
    dep = deployment("gemini", {"model": "gemini-2.5-flash"})
    assert adapter.chat_request(dep, {"messages": [USER]}, stream=True).url == \
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    dep = deployment("gemini", {"model": "gemini-2.5-flash", "base_url": "https://g.test/v1beta/"})
    req = adapter.chat_request(dep, {"messages": [USER]}, stream=False)
    assert req.url == "https://g.test/v1beta/models/gemini-2.5-flash:generateContent"
    assert req.headers["x-goog-api-key"] == "sk-test"
    assert adapter.embeddings_request(dep, {"input": "x"}).url.endswith(":batchEmbedContents")


def test_gemini_finish_reasons():
    assert FINISH_REASONS["STOP"] == "stop" and FINISH_REASONS["MAX_TOKENS"] == "length"
    for reason in ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "IMAGE_SAFETY"):
        assert FINISH_REASONS[reason] == "content_filter"


def test_gemini_embeddings_round_trip():
    adapter = get_adapter("gemini")
    dep = deployment("gemini", {"model": "text-embedding-004"})
    req = orjson.loads(adapter.embeddings_request(dep, {"input": ["a", "b"], "dimensions": 8}).body)
    assert req["requests"][1] == {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]},
                                  "outputDimensionality": 8}
    out = adapter.embeddings_response(dep, b'{"embeddings":[{"values":[0.1]},{"values":[0.2]}]}')
    assert [(d["index"], d["embedding"]) for d in out["data"]] == [(0, [0.1]), (1, [0.2])]
    with pytest.raises(RequestRejected):
        adapter.embeddings_request(dep, {"input": [[1, 2, 3]]})


# ---- OpenAI-compatible quirks ------------------------------------------------------------

def test_openai_reasoning_models_get_max_completion_tokens():
    assert body_of("openai", {"messages": [USER], "max_tokens": 5}, model="o4-mini") == \
        {"messages": [USER], "max_completion_tokens": 5, "model": "o4-mini"}
    assert body_of("openai", {"messages": [USER], "max_tokens": 5}, model="gpt-4o")["max_tokens"] == 5


def test_stream_always_asks_for_usage_where_supported():
    for provider in REGISTRY:
        if provider in ("anthropic", "gemini"):
            continue
        out = body_of(provider, {"messages": [USER], "stream": True}, stream=True)
        if provider == "mistral":
            assert "stream_options" not in out  # Mistral: 422 extra_forbidden; usage comes anyway
        else:
            assert out["stream_options"] == {"include_usage": True}, provider


def test_mistral_quirks():
    out = body_of("mistral", {"messages": [{"role": "user", "name": "a", "content": "x"}], "seed": 3,
                              "tool_choice": "required", "user": None, "logprobs": True})
    assert out == {"messages": [{"role": "user", "content": "x"}], "random_seed": 3, "tool_choice": "any",
                   "model": "upstream-model"}


def test_groq_quirks():
    out = body_of("groq", {"messages": [{"role": "user", "name": "a", "content": "x"}], "logprobs": True,
                           "top_logprobs": 2, "logit_bias": {}, "n": 1})
    assert out == {"messages": [{"role": "user", "content": "x"}], "n": 1, "model": "upstream-model"}
    with pytest.raises(RequestRejected, match="n=1"):
        body_of("groq", {"messages": [USER], "n": 2})


def test_reasoning_content_is_not_echoed_back():
    messages = [USER, {"role": "assistant", "content": "a", "reasoning_content": "think"}]
    for provider in ("deepseek", "openai", "mistral", "qwen"):
        assert "reasoning_content" not in body_of(provider, {"messages": messages})["messages"][1]


def test_deepseek_cache_hits_become_cached_tokens():
    data = b"\n\n" + orjson.dumps({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                                            "total_tokens": 11, "prompt_cache_hit_tokens": 8}})
    usage = get_adapter("deepseek").chat_response(deployment("deepseek"), data)["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 8


def test_azure_url_and_key_header():
    req = get_adapter("azure").chat_request(
        deployment("azure", {"model": "gpt-4o", "options": {"api_version": "2024-06-01"}}),
        {"messages": [USER]}, stream=False)
    assert req.url == "https://myres.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version=2024-06-01"
    assert req.headers["api-key"] == "sk-test" and "authorization" not in req.headers


def test_local_servers_need_no_key():
    dep = Deployment(name="m", provider="ollama", model="llama3.2", base_url="http://localhost:11434/v1")
    req = get_adapter("ollama").chat_request(dep, {"messages": [USER]}, stream=False)
    assert "authorization" not in req.headers and req.url == "http://localhost:11434/v1/chat/completions"


# ---- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", sorted(REGISTRY))
@pytest.mark.parametrize("status,retryable", [(400, False), (401, False), (403, False), (404, False),
                                              (408, True), (422, False), (429, True), (500, True),
                                              (502, True), (503, True), (504, True), (529, True)])
def test_every_status_is_classified(provider, status, retryable):
    err = get_adapter(provider).error(deployment(provider), status, {}, b"")
    assert err.retryable is retryable and err.status == status
    assert err.body["error"]["message"]


def test_retry_after_parsing():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({}) is None
    assert parse_duration("22s") == 22.0 and parse_duration("1.5s") == 1.5 and parse_duration("6m0s") == 360.0
    assert parse_duration("bogus") is None
