"""Mock LLM providers that speak each provider's exact wire format, for tests and benchmarks."""
from .core import Behavior, MockProvider, MockThread
from .openai import OpenAIMock

MOCKS: dict[str, type[MockProvider]] = {"openai": OpenAIMock}

__all__ = ["Behavior", "MockProvider", "MockThread", "OpenAIMock", "MOCKS"]
