"""Provider adapters: one module per wire format, registered by provider name."""
from .base import Adapter, Deployment, ProviderError, RequestRejected, UpstreamRequest
from .anthropic import ADAPTER as _ANTHROPIC
from .gemini import ADAPTER as _GEMINI
from .openai import ADAPTER as _OPENAI
from .openai import ADAPTERS as _OPENAI_COMPATIBLE
from .providers import PROVIDERS, ProviderInfo, provider_defaults

REGISTRY: dict[str, Adapter] = {
    **_OPENAI_COMPATIBLE,
    "anthropic": _ANTHROPIC,
    "gemini": _GEMINI,
}


def get_adapter(provider: str) -> Adapter:
    """The adapter for a provider name; unknown providers are OpenAI-compatible."""
    return REGISTRY.get(provider, _OPENAI)


__all__ = ["Adapter", "Deployment", "ProviderError", "RequestRejected", "UpstreamRequest",
           "REGISTRY", "get_adapter", "PROVIDERS", "ProviderInfo", "provider_defaults"]
