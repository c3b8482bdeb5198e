import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.mocks import Behavior, MockThread, OpenAIMock  # noqa: E402
from gateway import Gateway  # noqa: E402


@pytest.fixture
def openai_mock():
    """A fresh OpenAI-format mock provider on a loopback port, in its own thread."""
    with MockThread(OpenAIMock(Behavior(chunks=6))) as mock:
        yield mock


@pytest.fixture
def gateway_factory():
    """gateway_factory(config_dict, args=[...]) -> a started Gateway, stopped after the test."""
    started: list[Gateway] = []

    def make(config: dict | None = None, **kw) -> Gateway:
        gw = Gateway(config, **kw)
        started.append(gw)
        return gw.start()

    yield make
    for gw in started:
        gw.stop()
