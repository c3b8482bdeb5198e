"""Mock LLM providers that speak each provider's exact wire format, for tests and benchmarks."""
from .core import Behavior, MockProvider, MockThread
from .anthropic import AnthropicMock
from .gemini import GeminiMock
from .openai import OpenAIMock

MOCKS: dict[str, type[MockProvider]] = {"openai": OpenAIMock, "anthropic": AnthropicMock, "gemini": GeminiMock}

__all__ = ["Behavior", "MockProvider", "MockThread", "OpenAIMock", "AnthropicMock", "GeminiMock", "MOCKS"]
