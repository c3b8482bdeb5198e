"""Client keys for the gateway: `Authorization: Bearer <key>` → the key's id and limits.

Provider keys never leave the gateway; clients hold only these virtual keys. With none
configured the gateway is open, and the CLI keeps it on loopback unless told otherwise.
"""
from __future__ import annotations

import hmac

from aiohttp import web

from .config import KeyConfig
from .errors import GatewayError

__all__ = ["KeyStore"]


class KeyStore:
    def __init__(self, keys: list[KeyConfig]):
        self._by_token = {k.key: k for k in keys}
        self.open = not keys

    def authenticate(self, request: web.Request) -> KeyConfig | None:
        """The caller's key, None when the gateway is open; raises 401 otherwise."""
        if self.open:
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not token:
            raise GatewayError(401, "missing gateway key: send 'Authorization: Bearer <key>'",
                               code="missing_api_key", type="invalid_request_error")
        key = self._by_token.get(token)
        if key is None or not hmac.compare_digest(key.key, token):
            raise GatewayError(401, f"invalid gateway key ending in '{token[-4:]}'",
                               code="invalid_api_key", type="invalid_request_error")
        return key

    @staticmethod
    def key_id(key: KeyConfig | None) -> str | None:
        if key is None:
            return None
        return key.id or "key-" + key.key[-4:]

    @staticmethod
    def check_model(key: KeyConfig | None, model: str) -> None:
        if key is not None and key.models is not None and model not in key.models:
            raise GatewayError(403, f"this key may not use model '{model}'", param="model",
                               code="model_not_allowed")
