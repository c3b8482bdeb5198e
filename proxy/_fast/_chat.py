"""Prompt-token count of a whole chat request, shared by both twins.

This is Python-level walking over the request (dicts and lists), which Cython does not
make meaningfully faster; the per-string counting it calls is the twin's compiled (or
reference) `count_text_tokens`. `make_count_chat(count_text)` binds one to it.

Rules (OpenAI's published accounting, with documented guesses where none is published):
- 3 tokens per message, plus its role, content and name (+1 when a name is given), plus
  3 for the reply's priming;
- content given as parts: text parts as text; image parts by the tile rule below; audio
  and file parts are not counted (their cost is not a function of the request bytes);
- assistant `tool_calls`: each call's function name and arguments, plus 3 per call;
  `tool_call_id` of tool messages counts as text;
- tool definitions (unpublished format, estimated): each function's name, description
  and compact JSON parameters schema, plus 8 per tool, plus 12 when any tools are given;
- `response_format` with a JSON schema: the compact schema as text.
Images: detail "low" is 85 tokens. Otherwise the image is scaled to fit in 2048x2048,
then down so its shortest side is at most 768; each 512x512 tile costs 170, plus 85.
Width and height come from the header of a base64 data URL (PNG, GIF, WEBP, JPEG; only
the first 64 KiB are decoded); for remote URLs or unreadable data 1024x1024 is assumed
(765 tokens at high detail).
"""
from __future__ import annotations

import base64
import binascii
import struct

import orjson

__all__ = ["make_count_chat", "image_tokens", "image_size_from_data_url", "DEFAULT_IMAGE_SIZE"]

DEFAULT_IMAGE_SIZE = (1024, 1024)
_HEADER_B64_CHARS = 65536


def image_tokens(width: int, height: int, detail: str = "auto") -> int:
    """OpenAI's tile rule for one image."""
    if detail == "low":
        return 85
    w, h = float(width), float(height)
    if w <= 0 or h <= 0:
        return 85
    if w > 2048 or h > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = -(-int(w) // 512) * -(-int(h) // 512) if w >= 1 and h >= 1 else 1
    return 170 * max(tiles, 1) + 85


def _jpeg_size(data: bytes):
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg_len = (data[i + 2] << 8) | data[i + 3]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seg_len
    return None


def _image_size(data: bytes):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        fmt = data[12:16]
        if fmt == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if fmt == b"VP8L":
            b = data[21:25]
            w = 1 + (((b[1] & 0x3F) << 8) | b[0])
            h = 1 + (((b[3] & 0xF) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
            return w, h
        if fmt == b"VP8X":
            w = 1 + int.from_bytes(data[24:27], "little")
            h = 1 + int.from_bytes(data[27:30], "little")
            return w, h
        return None
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def image_size_from_data_url(url: str):
    """(width, height) from a `data:image/...;base64,` URL's header, or None."""
    if not url.startswith("data:"):
        return None
    comma = url.find(",", 0, 200)
    if comma < 0 or ";base64" not in url[:comma]:
        return None
    chunk = url[comma + 1:comma + 1 + _HEADER_B64_CHARS]
    chunk = chunk[:len(chunk) - len(chunk) % 4]
    try:
        data = base64.b64decode(chunk)
    except (binascii.Error, ValueError):
        return None
    try:
        size = _image_size(data)
    except (struct.error, IndexError):
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _image_part_tokens(part) -> int:
    spec = part.get("image_url")
    if isinstance(spec, str):
        url, detail = spec, "auto"
    elif isinstance(spec, dict):
        url, detail = spec.get("url") or "", spec.get("detail") or "auto"
    else:
        return 85
    if detail == "low":
        return 85
    size = image_size_from_data_url(url) if isinstance(url, str) else None
    w, h = size or DEFAULT_IMAGE_SIZE
    return image_tokens(w, h, detail)


def make_count_chat(count_text):
    """Build `count_chat_tokens(body) -> int` around a text counter."""

    def content_tokens(content) -> int:
        if isinstance(content, str):
            return count_text(content)
        if not isinstance(content, list):
            return 0
        n = 0
        for part in content:
            if isinstance(part, str):
                n += count_text(part)
            elif isinstance(part, dict):
                kind = part.get("type")
                if kind == "text" or (kind is None and "text" in part):
                    text = part.get("text")
                    if isinstance(text, str):
                        n += count_text(text)
                elif kind == "image_url":
                    n += _image_part_tokens(part)
                elif kind == "refusal":
                    text = part.get("refusal")
                    if isinstance(text, str):
                        n += count_text(text)
        return n

    def tools_tokens(tools) -> int:
        n = 12
        for tool in tools:
            if not isinstance(tool, dict):
                continue
            fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            n += 8
            name = fn.get("name")
            if isinstance(name, str):
                n += count_text(name)
            desc = fn.get("description")
            if isinstance(desc, str):
                n += count_text(desc)
            params = fn.get("parameters")
            if params is not None:
                n += count_text(orjson.dumps(params).decode())
        return n

    def count_chat_tokens(body: dict) -> int:
        """Estimated prompt tokens of an OpenAI chat request (see proxy/_fast/_chat.py)."""
        n = 3
        for msg in body.get("messages") or ():
            if not isinstance(msg, dict):
                continue
            n += 3
            role = msg.get("role")
            if isinstance(role, str):
                n += count_text(role)
            n += content_tokens(msg.get("content"))
            name = msg.get("name")
            if isinstance(name, str):
                n += count_text(name) + 1
            tcid = msg.get("tool_call_id")
            if isinstance(tcid, str):
                n += count_text(tcid)
            calls = msg.get("tool_calls")
            if isinstance(calls, list):
                for call in calls:
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict):
                        n += 3
                        for key in ("name", "arguments"):
                            v = fn.get(key)
                            if isinstance(v, str):
                                n += count_text(v)
        tools = body.get("tools")
        if isinstance(tools, list) and tools:
            n += tools_tokens(tools)
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and isinstance(fmt.get("json_schema"), dict):
            n += count_text(orjson.dumps(fmt["json_schema"]).decode())
        return n

    return count_chat_tokens
