"""Recorded payloads through every registered adapter: requests out, responses, streams and
errors back, compared with the reviewed expected files (see golden.py)."""
from __future__ import annotations

import random

import orjson
import pytest

from adapters import PROVIDERS, REGISTRY, RequestRejected, get_adapter
from golden import (DATA, check, deployment, load, normalize, providers, random_splits, run_stream,
                    sse_events)

SSE_FILES = sorted(DATA.glob("*/*.sse"))


def test_every_registered_adapter_has_golden_files():
    assert set(REGISTRY) == set(PROVIDERS)
    for name in REGISTRY:
        assert load(name, "requests.json"), f"{name}: no recorded requests"
        assert load(name, "errors.json"), f"{name}: no recorded errors"
        assert (DATA / name / "requests.expected.json").exists()
        assert (DATA / name / "errors.expected.json").exists()
    assert set(providers()) == set(REGISTRY)


@pytest.mark.parametrize("provider", sorted(REGISTRY))
def test_requests(provider):
    adapter = get_adapter(provider)
    actual = {}
    for case in load(provider, "requests.json"):
        dep = deployment(provider, case.get("deployment"))
        try:
            req = adapter.chat_request(dep, case["body"], stream=case["stream"])
        except RequestRejected as exc:
            actual[case["name"]] = {"rejected": exc.error.body, "status": exc.error.status}
            continue
        actual[case["name"]] = {"method": req.method, "url": req.url, "headers": req.headers,
                                "body": orjson.loads(req.body)}
    check(provider, "requests", actual)


def test_request_translation_leaves_the_client_body_alone():
    for provider in REGISTRY:
        for case in load(provider, "requests.json"):
            before = orjson.dumps(case["body"])
            try:
                get_adapter(provider).chat_request(deployment(provider, case.get("deployment")),
                                                   case["body"], stream=case["stream"])
            except RequestRejected:
                pass
            assert orjson.dumps(case["body"]) == before, (provider, case["name"])


@pytest.mark.parametrize("provider", [p for p in sorted(REGISTRY) if load(p, "responses.json")])
def test_responses(provider):
    adapter = get_adapter(provider)
    actual = {}
    for case in load(provider, "responses.json"):
        data = case.get("raw_prefix", "").encode() + orjson.dumps(case["upstream"])
        actual[case["name"]] = adapter.chat_response(deployment(provider), data)
    check(provider, "responses", actual)


@pytest.mark.parametrize("provider", sorted(REGISTRY))
def test_errors(provider):
    adapter = get_adapter(provider)
    actual = {}
    for case in load(provider, "errors.json"):
        body = case["body"]
        data = body.encode() if isinstance(body, str) else orjson.dumps(body)
        err = adapter.error(deployment(provider), case["status"], case["headers"], data)
        assert set(err.body["error"]) >= {"message", "type", "param", "code"}
        actual[case["name"]] = {"status": err.status, "kind": err.kind, "retryable": err.retryable,
                                "retry_after": err.retry_after, "body": err.body}
    check(provider, "errors", actual)


def _stream_summary(out: bytes, translator) -> dict:
    return {"events": sse_events(out), "done": translator.done, "finish_reason": translator.finish_reason,
            "usage": translator.usage, "model": translator.model, "completion_text": translator.completion_text,
            "error": None if translator.error is None else {"kind": translator.error.kind,
                                                            "retryable": translator.error.retryable}}


@pytest.mark.parametrize("path", SSE_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in SSE_FILES])
def test_stream_captures(path):
    provider = path.parent.name
    out, translator = run_stream(provider, path.read_bytes(), include_usage=True)
    check(provider, path.stem, {"include_usage": _stream_summary(out, translator)})


@pytest.mark.parametrize("path", SSE_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in SSE_FILES])
def test_stream_same_output_under_any_chunking(path):
    provider, raw = path.parent.name, path.read_bytes()
    whole, _ = run_stream(provider, raw, include_usage=True)
    expected = normalize(sse_events(whole))
    byte_by_byte, _ = run_stream(provider, raw, include_usage=True, splits=list(range(1, len(raw))))
    assert normalize(sse_events(byte_by_byte)) == expected
    rng = random.Random(hash(path.name) & 0xFFFF)
    for _ in range(25):
        out, _ = run_stream(provider, raw, include_usage=True, splits=random_splits(len(raw), rng))
        assert normalize(sse_events(out)) == expected


@pytest.mark.parametrize("path", SSE_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in SSE_FILES])
def test_stream_usage_chunk_only_when_asked(path):
    provider, raw = path.parent.name, path.read_bytes()
    with_usage = normalize(sse_events(run_stream(provider, raw, include_usage=True)[0]))
    without = normalize(sse_events(run_stream(provider, raw, include_usage=False)[0]))
    usage_only = [e for e in with_usage if isinstance(e, dict) and e.get("choices") == [] and e.get("usage")]
    assert without == [e for e in with_usage if e not in usage_only]
    for event in without:
        assert not (isinstance(event, dict) and event.get("usage")), event
    for event in with_usage:  # every chunk the openai SDK sees has a list of choices
        if isinstance(event, dict) and "error" not in event:
            assert isinstance(event["choices"], list) and event["object"] == "chat.completion.chunk"


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("path", SSE_FILES, ids=[f"{p.parent.name}/{p.stem}" for p in SSE_FILES])
def test_stream_collect_assembles_what_was_written(path, include_usage):
    """The chunks a translator tells its collector (the response cache's assembler) add up
    to what an assembler reading the written bytes rebuilds, under any chunking."""
    from proxy.cache.replay import StreamAssembler

    provider, raw = path.parent.name, path.read_bytes()
    rng = random.Random(hash(path.name) & 0xFFFF)
    for splits in (None, list(range(1, len(raw))), random_splits(len(raw), rng)):
        translator = get_adapter(provider).chat_stream(deployment(provider, {"model": "upstream-model"}),
                                                       include_usage=include_usage)
        told = translator.collect = StreamAssembler()
        out = []
        start = 0
        for end in (splits or []) + [len(raw)]:
            out.append(translator.feed(raw[start:end]))
            start = end
        out.append(translator.finish())
        read = StreamAssembler()
        read.feed(b"".join(out))
        if not translator.done or translator.error is not None:
            assert read.result() is None
            continue
        told.finish()
        want, got = read.result(), told.result()
        assert want is not None and got is not None
        want.pop("usage", None)
        got.pop("usage", None)
        assert got == want
