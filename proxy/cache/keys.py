"""Cache keys: the exact key of a request, and the context key of its semantic partition.

Both come from `proxy._fast.cache_key` (the canonical-request hash of the hot path). The
context key is the exact key of the request with the last user turn blanked out, so two
requests share a semantic partition only when route, scope, system prompt, earlier turns,
tools and every sampling parameter are the same.
"""
from __future__ import annotations

from proxy._fast import cache_key

__all__ = ["exact_key", "context_key", "last_user_text", "cache_key"]


def exact_key(body: dict, route: str, scope: str) -> bytes:
    return cache_key(body, route, scope)


def last_user_text(body: dict) -> str | None:
    """The text of the last message when it is a user turn of text only, else None."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content if content.strip() else None
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                return None  # images, audio, files: not comparable by text
            texts.append(part["text"])
        text = "\n".join(texts)
        return text if text.strip() else None
    return None


def context_key(body: dict, route: str, scope: str) -> bytes:
    messages = list(body["messages"])
    last = dict(messages[-1])
    last["content"] = ""
    messages[-1] = last
    return cache_key({**body, "messages": messages}, route, "semantic\x00" + scope)
