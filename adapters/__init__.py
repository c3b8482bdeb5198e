"""Provider adapters: one module per wire format, registered by provider name."""
from .base import Adapter, Deployment, ProviderError, UpstreamRequest
from .openai import ADAPTER as _OPENAI
from .providers import PROVIDERS, ProviderInfo, provider_defaults

REGISTRY: dict[str, Adapter] = {
    "openai": _OPENAI,
}
for _name, _info in PROVIDERS.items():
    if _info.format == "openai":
        REGISTRY.setdefault(_name, _OPENAI)


def get_adapter(provider: str) -> Adapter:
    """The adapter for a provider name; unknown providers are OpenAI-compatible."""
    return REGISTRY.get(provider, _OPENAI)


__all__ = ["Adapter", "Deployment", "ProviderError", "UpstreamRequest", "REGISTRY", "get_adapter",
           "PROVIDERS", "ProviderInfo", "provider_defaults"]
