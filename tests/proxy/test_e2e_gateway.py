"""End to end: the official openai SDK → a real `faregate serve` process → the mock provider."""
from __future__ import annotations

import asyncio
import signal
import threading
import time
import urllib.request

import openai
import orjson
import pytest

from bench.mocks import Behavior, MockThread, OpenAIMock
from gateway import Gateway, free_port, http_get, http_post, stream_lines

KEY = "sk-faregate-test-0001"
MSG = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def stack():
    with MockThread(OpenAIMock(Behavior(chunks=6))) as mock:
        dead = f"http://127.0.0.1:{free_port()}/v1"
        config = {
            "server": {"max_body_mb": 0.05},
            "upstream": {"first_byte_timeout_s": 1.0, "connect_timeout_s": 1.0},
            "keys": [{"key": KEY, "id": "team-a"}],
            "models": [
                {"name": "gpt-4o-mini", "provider": "openai", "base_url": mock.url + "/v1", "api_key": "up-key"},
                {"name": "text-embedding-3-small", "provider": "openai", "base_url": mock.url + "/v1"},
                {"name": "dead-model", "provider": "openai", "base_url": dead},
                {"name": "slow-model", "provider": "openai", "base_url": mock.url + "/v1"},
            ],
        }
        with Gateway(config) as gw:
            yield gw, mock


@pytest.fixture
def client(stack):
    gw, _ = stack
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0, timeout=20)


@pytest.fixture
def mock(stack):
    _, mock = stack
    mock.call(mock.provider.reset_stats)
    mock.call(lambda: mock.provider.model_behavior.clear())
    return mock


def set_behavior(mock, model: str, **patch):
    mock.call(lambda: mock.provider.model_behavior.__setitem__(model, patch))


def test_non_stream_sync(client, mock):
    r = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    completion = r.parse()
    assert completion.choices[0].message.content.startswith("the quick")
    assert completion.usage.completion_tokens == 6
    assert r.headers["x-faregate-model"] == "gpt-4o-mini"
    assert r.headers["x-faregate-provider"] == "openai"
    assert float(r.headers["x-faregate-latency-ms"]) >= 0
    assert r.headers["x-request-id"].startswith("req_")
    seen = mock.call(lambda: mock.provider.stats["last_headers"])
    assert seen["Authorization"] == "Bearer up-key"  # the provider key, never the client's


async def test_non_stream_async(stack, mock):
    gw, _ = stack
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=KEY, max_retries=0)
    results = await asyncio.gather(*[
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG) for _ in range(8)])
    assert all(r.choices[0].finish_reason == "stop" for r in results)
    await client.close()


def test_stream_without_usage(client, mock):
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "the quick brown fox jumps over"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)  # the gateway asked upstream, the client did not
    assert mock.call(lambda: mock.provider.stats["last_request"])["stream_options"]["include_usage"] is True


def test_stream_with_usage(client, mock):
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 6


def test_stream_usage_reaches_access_log(stack, client, mock):
    gw, _ = stack
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                        extra_headers={"x-request-id": "req-usage-log-1"}))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = [r for r in gw.access_log() if r["id"] == "req-usage-log-1"]
        if rows:
            break
        time.sleep(0.05)
    assert rows and rows[0]["completion_tokens"] == 6 and rows[0]["stream"] is True
    assert rows[0]["status"] == 200 and "ttft_ms" in rows[0]


def test_embeddings(client, mock):
    r = client.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 256
    assert r.usage.prompt_tokens > 0


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids
    assert client.models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_unknown_fields_pass_through(client, mock):
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                   extra_body={"custom_field": {"a": [1, 2]}, "top_k": 5})
    body = mock.call(lambda: mock.provider.stats["last_request"])
    assert body["custom_field"] == {"a": [1, 2]} and body["top_k"] == 5


# ---- errors: each raises the SDK's matching exception and names the cause ----------------------

def _raw(gw, body: bytes, key: str | None = KEY, path="/v1/chat/completions"):
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return http_post(gw.url + path, body, headers)


def test_malformed_json(stack):
    gw, _ = stack
    r = _raw(gw, b'{"model": "gpt-4o-mini", "messages": [')
    assert r.status == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "not valid JSON" in err["message"] and err["code"] == "invalid_json"


def test_messages_not_a_list(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages="hello")  # type: ignore[arg-type]
    assert "'messages' must be an array" in exc.value.message
    assert exc.value.body["param"] == "messages"


def test_unknown_role(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "wizard", "content": "x"}])
    assert "messages[0].role" in exc.value.message and "'wizard'" in exc.value.message


def test_bad_parameter_value(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, temperature=7)
    assert exc.value.body["param"] == "temperature"


def test_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-9-ultra", messages=MSG)
    assert "gpt-9-ultra" in exc.value.message and exc.value.code == "model_not_found"


def test_body_too_large(client):
    big = [{"role": "user", "content": "x" * 100_000}]
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=big)
    assert exc.value.status_code == 413
    assert "too large" in exc.value.message


def test_missing_and_wrong_key(stack):
    gw, _ = stack
    for key in ("", "sk-wrong-key"):
        c = openai.OpenAI(base_url=gw.url + "/v1", api_key=key or "unused", max_retries=0,
                          default_headers={"authorization": ""} if not key else None)
        with pytest.raises(openai.AuthenticationError) as exc:
            c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        assert "gateway key" in exc.value.message


def test_upstream_unreachable(client):
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="dead-model", messages=MSG)
    assert exc.value.status_code == 502
    assert "unreachable" in exc.value.message


def test_upstream_timeout(client, mock):
    set_behavior(mock, "slow-model", latency_ms=3000)
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="slow-model", messages=MSG)
    assert exc.value.status_code == 504
    assert "timed out" in exc.value.message


def test_upstream_error_passed_on_with_status(client, mock):
    set_behavior(mock, "gpt-4o-mini", status=429, retry_after=7, error_message="slow down please")
    with pytest.raises(openai.RateLimitError) as exc:
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert "slow down please" in exc.value.message
    assert exc.value.response.headers["retry-after"] == "7"
    set_behavior(mock, "gpt-4o-mini", status=400, error_message="bad thing")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)


def test_unknown_path_and_method(stack):
    gw, _ = stack
    r = http_get(gw.url + "/v1/nope")
    assert r.status == 404 and "unknown path" in r.json()["error"]["message"]
    r = http_get(gw.url + "/v1/chat/completions")
    assert r.status == 405 and r.json()["error"]["type"] == "invalid_request_error"


def test_health_and_ready(stack):
    gw, _ = stack
    assert http_get(gw.url + "/healthz").json()["status"] == "ok"
    assert http_get(gw.url + "/readyz").status == 200
    assert http_get(gw.url + "/chat/completions").status == 405  # the paths without /v1 exist


# ---- streaming behaviour ----------------------------------------------------------------------

def test_stream_relayed_as_it_arrives(client, mock):
    set_behavior(mock, "gpt-4o-mini", chunks=6, chunk_delay_ms=150)
    t0 = time.monotonic()
    arrivals = []
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - t0)
    # the mock sends the last content chunk ~750 ms after the first one
    assert len(arrivals) == 6
    assert arrivals[0] < 0.4, arrivals
    assert arrivals[-1] - arrivals[0] > 0.6, arrivals


def test_client_disconnect_closes_upstream(stack, mock):
    gw, _ = stack
    set_behavior(mock, "gpt-4o-mini", chunks=40, chunk_delay_ms=50)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MSG, "stream": True})
    with stream_lines(gw.url + "/v1/chat/completions", body, {"authorization": f"Bearer {KEY}"}) as lines:
        for line in lines:
            if b'"content":"the"' in line:
                break
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        stats = mock.call(lambda: dict(mock.provider.stats))
        if stats["disconnects"]:
            break
        time.sleep(0.05)
    assert stats["disconnects"] == 1 and stats["completed_streams"] == 0


def logged(gw, id_prefix: str, n: int) -> list[dict]:
    """The access-log rows of requests whose id starts with `id_prefix`, once there are `n`
    (a row is written when its request ends, a moment after the client saw the end)."""
    deadline = time.monotonic() + 5
    while True:
        rows = [r for r in gw.access_log() if r["id"].startswith(id_prefix)]
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_a_client_that_leaves_at_done_got_the_whole_stream(stack, client, mock):
    """The last bytes and the end of the response leave together, so a client that stops
    reading at `data: [DONE]` and closes (as the openai SDK does) is logged 200, not as a
    disconnect, even when the provider's own body end comes a moment later."""
    gw, _ = stack
    set_behavior(mock, "gpt-4o-mini", chunks=3, chunk_delay_ms=0)
    for i in range(10):
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True,
                                            extra_headers={"x-request-id": f"req-at-done-{i}"}))
    assert [r["status"] for r in logged(gw, "req-at-done-", 10)] == [200] * 10


def test_client_disconnects_do_not_cool_the_deployment_down(stack, client, mock):
    """A client walking away is not the provider's fault: after more disconnects than the
    breaker's failure threshold (5), the deployment still serves at the first attempt."""
    gw, _ = stack
    # no delay between chunks, and more of them (~11 MB) than the loopback socket buffers
    # hold: the gateway is mid-write when the client goes, as under load
    set_behavior(mock, "gpt-4o-mini", chunks=50000, chunk_delay_ms=0)
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": MSG, "stream": True})
    for i in range(7):
        with stream_lines(gw.url + "/v1/chat/completions", body,
                          {"authorization": f"Bearer {KEY}", "x-request-id": f"req-walkaway-{i}"}) as lines:
            for line in lines:
                if b'"content":"the"' in line:
                    break
    assert [r["status"] for r in logged(gw, "req-walkaway-", 7)] == [499] * 7
    set_behavior(mock, "gpt-4o-mini", chunks=3)
    r = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in r.parse() if c.choices) == "the quick brown"
    assert r.headers["x-faregate-attempts"] == "1"


def test_failure_mid_stream_ends_with_error_event(client, mock):
    set_behavior(mock, "gpt-4o-mini", fault="cut", cut_after=3, chunks=10)
    seen = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                seen.append(chunk.choices[0].delta.content)
    assert seen == ["the", " quick", " brown"]
    assert "before the response was complete" in str(exc.value)


def test_sigterm_lets_inflight_stream_finish():
    with MockThread(OpenAIMock(Behavior(chunks=10, chunk_delay_ms=100))) as mock:
        config = {"models": [{"name": "m", "base_url": mock.url + "/v1"}]}
        gw = Gateway(config).start()
        try:
            c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            got = []
            stream = c.chat.completions.create(model="m", messages=MSG, stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    got.append(chunk.choices[0].delta.content)
                    if len(got) == 2:
                        gw.signal(signal.SIGTERM)
            assert len(got) == 10  # the whole answer arrived after SIGTERM
            assert gw.wait(15) == 0
            with pytest.raises(OSError):
                urllib.request.urlopen(gw.url + "/healthz", timeout=1)
        finally:
            gw.stop()


def test_workers_share_one_port():
    with MockThread(OpenAIMock(Behavior(chunks=3))) as mock:
        config = {"models": [{"name": "m", "base_url": mock.url + "/v1"}]}
        gw = Gateway(config, args=["--workers", "2"]).start()
        try:
            c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            for _ in range(20):
                assert c.chat.completions.create(model="m", messages=MSG).choices[0].message.content
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:  # the second worker may log a moment later
                pids = {line.split("worker ")[1].split()[0] for line in gw.stderr().splitlines()
                        if "listening on" in line}
                if len(pids) == 2:
                    break
                time.sleep(0.1)
            assert len(pids) == 2
            gw.signal(signal.SIGTERM)
            assert gw.wait(15) == 0
        finally:
            gw.stop()


def test_access_log_can_be_turned_off():
    with MockThread(OpenAIMock()) as mock:
        gw = Gateway({"models": [{"name": "m", "base_url": mock.url + "/v1"}]},
                     args=["--no-access-log"]).start()
        try:
            openai.OpenAI(base_url=gw.url + "/v1", api_key="x").chat.completions.create(model="m", messages=MSG)
        finally:
            gw.stop()
        assert gw.access_log() == []


def test_pure_python_twin_serves_the_same():
    """FAREGATE_NO_EXTENSIONS=1 runs the gateway on the pure-Python hot path, same answers."""
    with MockThread(OpenAIMock(Behavior(chunks=4))) as mock:
        gw = Gateway({"models": [{"name": "m", "base_url": mock.url + "/v1"}]},
                     env={"FAREGATE_NO_EXTENSIONS": "1"}).start()
        try:
            assert http_get(gw.url + "/healthz").json()["hot_path"] == "py"
            c = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
            assert c.chat.completions.create(model="m", messages=MSG).choices[0].message.content == \
                "the quick brown fox"
            chunks = list(c.chat.completions.create(model="m", messages=MSG, stream=True,
                                                    stream_options={"include_usage": True}))
            assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == \
                "the quick brown fox"
            assert chunks[-1].usage.completion_tokens == 4
        finally:
            gw.stop()
