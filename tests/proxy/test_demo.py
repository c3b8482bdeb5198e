"""`faregate serve --demo`: no keys, no config file, answers at once through the openai SDK."""
import openai
import pytest

from gateway import Gateway, http_get

MSG = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    env = {k: "" for k in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "DEEPSEEK_API_KEY")}
    with Gateway(None, args=["--demo"], env=env) as gw:
        yield gw, openai.OpenAI(base_url=gw.url + "/v1", api_key="anything", max_retries=0, timeout=30)


def test_demo_serves_models_in_every_wire_format(demo):
    gw, client = demo
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "auto"} <= ids
    providers = set()
    for model in ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"):
        r = client.chat.completions.with_raw_response.create(model=model, messages=MSG)
        assert r.parse().choices[0].message.content
        assert float(r.headers["x-faregate-cost-usd"]) > 0  # catalog prices
        providers.add(r.headers["x-faregate-provider"])
        chunks = list(client.chat.completions.create(model=model, messages=MSG, stream=True,
                                                     stream_options={"include_usage": True}))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].usage.completion_tokens > 0
    assert providers == {"openai", "anthropic", "gemini"}


def test_demo_routes_auto_and_explains_it(demo):
    gw, client = demo
    r = client.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert r.parse().choices[0].message.content
    assert "tier" in r.headers["x-faregate-route"]


def test_demo_caches_repeated_questions(demo):
    gw, client = demo
    q = [{"role": "user", "content": "What is the capital of Norway?"}]
    first = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=q)
    again = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=q)
    assert first.headers["x-faregate-cache"] == "miss" and again.headers["x-faregate-cache"] == "hit"
    assert again.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert http_get(gw.url + "/healthz").json()["status"] == "ok"
