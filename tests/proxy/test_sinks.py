"""The request sinks (metrics, ledger, access log) run after the client's response is written,
off the latency path, and still see every request."""
import orjson
import yaml
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web_protocol import RequestHandler

from proxy.app import STATE, create_app
from proxy.config import parse_config


def _config(mock_url: str, tmp_path) -> str:
    return yaml.safe_dump({
        "models": [{"name": "m", "provider": "openai", "base_url": mock_url + "/v1", "api_key": "k"}],
        "ledger": {"path": str(tmp_path / "ledger.sqlite3")},
        "cache": {"enabled": False},
        "server": {"access_log": False},
    })


async def test_sinks_run_after_the_response_is_written(openai_mock, tmp_path, monkeypatch):
    events: list[str] = []
    finish = RequestHandler.finish_response

    async def finish_and_note(self, request, resp, start_time):
        out = await finish(self, request, resp, start_time)
        if request.app is app and request.path.endswith("/chat/completions"):  # not the mock's
            events.append(f"written {resp.status}")
        return out

    monkeypatch.setattr(RequestHandler, "finish_response", finish_and_note)
    app = create_app(parse_config(_config(openai_mock.url, tmp_path)))
    records = []
    app[STATE].sinks.append(lambda rec: (events.append(f"sink {rec.status}"), records.append(rec)))
    async with TestClient(TestServer(app)) as client:
        ok = await client.post("/v1/chat/completions", data=orjson.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        assert ok.status == 200
        await ok.read()
        bad = await client.post("/v1/chat/completions", data=b'{"model": "m"}')
        assert bad.status == 400
        await bad.read()
    assert events == ["written 200", "sink 200", "written 400", "sink 400"]
    assert records[0].provider == "openai" and records[0].latency_ms > 0
    assert records[1].error_class == "client_error"
