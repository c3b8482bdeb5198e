"""The mock providers' control endpoints, over HTTP as benchmarks and other processes use them."""
import openai
import orjson

from bench.mocks import MockThread, OpenAIMock
from gateway import http_get, http_post


def test_stats_and_behavior_over_http():
    with MockThread(OpenAIMock()) as mock:
        client = openai.OpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=0)
        client.chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}])
        stats = http_get(mock.url + "/_mock/stats").json()
        assert stats["requests"] == 1 and stats["by_model"] == {"a": 1}
        assert stats["last_headers"]["Authorization"] == "Bearer k"
        r = http_post(mock.url + "/_mock/behavior", orjson.dumps({"model": "a", "status": 503}))
        assert r.status == 200 and r.json()["models"] == {"a": {"status": 503}}
        try:
            client.chat.completions.create(model="a", messages=[{"role": "user", "content": "x"}])
        except openai.InternalServerError as exc:
            assert exc.status_code == 503
        else:
            raise AssertionError("the per-model behaviour was not applied")
        assert http_post(mock.url + "/_mock/reset", b"{}").json() == {"ok": True}
        assert http_get(mock.url + "/_mock/stats").json()["requests"] == 0
