"""Provider adapters: one module per wire format, registered by provider name."""
from .base import Adapter, Deployment, ProviderError, UpstreamRequest
from .openai import ADAPTER as _OPENAI

REGISTRY: dict[str, Adapter] = {
    "openai": _OPENAI,
}


def get_adapter(provider: str) -> Adapter:
    """The adapter for a provider name; unknown providers are OpenAI-compatible."""
    return REGISTRY.get(provider, _OPENAI)


__all__ = ["Adapter", "Deployment", "ProviderError", "UpstreamRequest", "REGISTRY", "get_adapter"]
