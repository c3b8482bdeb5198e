"""What each provider name means before any config: its wire format, default base URL and
where its key comes from. Config fills a model entry's `base_url` and `api_key` from here,
and the registry picks the adapter by `format`."""
from __future__ import annotations

import msgspec

__all__ = ["ProviderInfo", "PROVIDERS", "provider_defaults"]


class ProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    format: str                 # wire format / adapter module: openai | anthropic | gemini
    base_url: str               # "" when it depends on the account (Azure)
    key_env: str | None         # environment variable holding the key
    requires_key: bool = True
    auth: str = "bearer"        # bearer | api-key | x-api-key | x-goog-api-key | none
    base_url_env: str | None = None  # environment variable that may hold the base URL


def _p(name: str, fmt: str, base_url: str, key_env: str | None, **kw) -> ProviderInfo:
    return ProviderInfo(name=name, format=fmt, base_url=base_url, key_env=key_env, **kw)


PROVIDERS: dict[str, ProviderInfo] = {p.name: p for p in (
    _p("openai", "openai", "https://api.openai.com/v1", "OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL"),
    _p("azure", "openai", "", "AZURE_OPENAI_API_KEY", auth="api-key", base_url_env="AZURE_OPENAI_ENDPOINT"),
    _p("deepseek", "openai", "https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    _p("mistral", "openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    _p("groq", "openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    _p("together", "openai", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    _p("fireworks", "openai", "https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY"),
    _p("openrouter", "openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    _p("xai", "openai", "https://api.x.ai/v1", "XAI_API_KEY"),
    _p("qwen", "openai", "https://dashscope.aliyuncs.com/compatible-mode/v1", "DASHSCOPE_API_KEY"),
    _p("ollama", "openai", "http://localhost:11434/v1", None, requires_key=False, auth="none",
       base_url_env="OLLAMA_BASE_URL"),
    _p("vllm", "openai", "http://localhost:8000/v1", "VLLM_API_KEY", requires_key=False),
    _p("llamacpp", "openai", "http://localhost:8080/v1", "LLAMACPP_API_KEY", requires_key=False),
    _p("anthropic", "anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY", auth="x-api-key"),
    _p("gemini", "gemini", "https://generativelanguage.googleapis.com", "GEMINI_API_KEY",
       auth="x-goog-api-key"),
)}


def provider_defaults(provider: str) -> ProviderInfo:
    """The defaults for a provider name; KeyError (naming the known ones) when it has none."""
    try:
        return PROVIDERS[provider]
    except KeyError:
        raise KeyError(f"unknown provider {provider!r}; known providers: "
                       + ", ".join(sorted(PROVIDERS))) from None
