"""Hot-path kernels, pure Python: the reference implementation.

`_hotpath_c.pyx` has the same names and behaviour, compiled. The docstrings here are the
contract for both; tests run every function against both and property tests check that
they agree on generated input.
"""
from __future__ import annotations

import bisect
import hashlib
import math

import orjson

from . import _token_tables as _T
from ._chat import make_count_chat

__all__ = ["SSEEvent", "SSEParser", "encode_sse", "extract_chunk", "SHAPE_OTHER", "SHAPE_CHOICES",
           "SHAPE_SIMPLE", "count_text_tokens",
           "count_chat_tokens", "cache_key", "cache_key_hex", "CACHE_EXCLUDED",
           "WeightedPicker", "LatencyWindow"]


class SSEEvent:
    """One dispatched server-sent event.

    `data` is the event's data lines joined with b"\\n" (bytes, ready for orjson.loads);
    `event` is the last `event:` field (None when absent), `id` the last event id seen on
    the stream so far (None when none), `retry` the `retry:` value given in this event
    (None when absent or not a number).
    """

    __slots__ = ("event", "data", "id", "retry")

    def __init__(self, event, data, id=None, retry=None):
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry

    def __eq__(self, other):
        if not hasattr(other, "data") or not hasattr(other, "event"):
            return NotImplemented
        return (self.event == other.event and self.data == other.data
                and self.id == other.id and self.retry == other.retry)

    def __repr__(self):
        return f"SSEEvent(event={self.event!r}, data={self.data!r}, id={self.id!r}, retry={self.retry!r})"


class SSEParser:
    """Incremental parser for a text/event-stream byte stream (WHATWG rules).

    feed(chunk) takes bytes split at any boundary and returns the events completed by it.
    Lines end in \\n, \\r\\n or \\r (a \\r at the end of one chunk and a \\n at the start of
    the next are one line end). Lines starting with ':' are comments and are skipped. A line
    without ':' is a field with an empty value; one space after the colon is stripped.
    Fields: data (joined with \\n), event, id (ignored if it contains NUL), retry (digits
    only). A blank line dispatches the event if it had at least one data line. Unknown
    fields are ignored. `[DONE]` is an ordinary data payload; callers check for it.
    close() returns nothing: per the spec an event not ended by a blank line is dropped.
    The bytes of an incomplete line are kept between calls; each byte is scanned once.
    """

    __slots__ = ("_buf", "_scan", "_skip_lf", "_data", "_event", "_last_id", "_retry")

    def __init__(self):
        self._buf = bytearray()
        self._scan = 0
        self._skip_lf = False
        self._data = None
        self._event = None
        self._last_id = None
        self._retry = None

    def feed(self, chunk) -> list:
        events = []
        if not chunk:
            return events
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
        buf = self._buf
        buf += chunk
        n = len(buf)
        start = 0
        nl = buf.find(b"\n", self._scan)
        cr = buf.find(b"\r", self._scan)
        while nl >= 0 or cr >= 0:
            if cr < 0 or (0 <= nl < cr):
                end = nl
                nxt = nl + 1
            else:
                end = cr
                if cr + 1 < n:
                    nxt = cr + 2 if buf[cr + 1] == 10 else cr + 1
                else:
                    nxt = cr + 1
                    self._skip_lf = True
            self._line(bytes(buf[start:end]), events)
            start = nxt
            if 0 <= nl < start:
                nl = buf.find(b"\n", start)
            if 0 <= cr < start:
                cr = buf.find(b"\r", start)
        if start:
            del buf[:start]
        self._scan = len(buf)
        return events

    def close(self) -> list:
        self._buf = bytearray()
        self._scan = 0
        self._data = None
        self._event = None
        self._retry = None
        return []

    def _line(self, line: bytes, events: list) -> None:
        if line.startswith(b"data:"):
            value = line[6:] if line[5:6] == b" " else line[5:]
            if self._data is None:
                self._data = [value]
            else:
                self._data.append(value)
            return
        if not line:
            if self._data is not None:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append(SSEEvent(self._event, data, self._last_id, self._retry))
            self._data = None
            self._event = None
            self._retry = None
            return
        if line[0] == 58:  # ':' comment
            return
        colon = line.find(b":")
        if colon < 0:
            field, value = line, b""
        else:
            field = line[:colon]
            value = line[colon + 2:] if line[colon + 1:colon + 2] == b" " else line[colon + 1:]
        if field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif field == b"data":  # only reached as "data" with no colon
            if self._data is None:
                self._data = [value]
            else:
                self._data.append(value)
        elif field == b"id":
            if b"\x00" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif field == b"retry":
            if value and value.isdigit():
                self._retry = int(value)


def encode_sse(data: bytes, event: str | None = None) -> bytes:
    """Frame one payload as an SSE event: optional `event:` line, `data:` lines, blank line.

    A payload containing line breaks is split into several data lines, so a parser gets
    `data` back with each line break as \n.
    """
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"".join(b"data: " + line + b"\n" for line in lines)
    else:
        body = b"data: " + data + b"\n"
    if event is not None:
        return b"event: " + event.encode() + b"\n" + body + b"\n"
    return body + b"\n"


# Token estimation
#
# The text is cut into the pieces o200k_base's split pattern would make (words with an
# optional one-character prefix, split at lower->upper case changes, with 's/'t/... kept on;
# runs of up to three digits; punctuation runs with an optional leading space and any
# trailing newlines; whitespace runs, the last space of which goes to a following word).
# Each piece costs a calibrated number of milli-tokens looked up by (kind, script, prefix,
# length) in `_token_tables`; the sum is rounded once at the end. BPE never merges across
# these pieces, so per-piece averages fitted on a corpus give unbiased totals. Whitespace
# pieces longer than WS_SHORT are priced by their runs of one kind of whitespace instead,
# from exact counts of such runs. Every step is integer arithmetic on code points (case
# and letter tests use the same unicodedata flags as the C API), so the compiled twin
# gives the same number.

K_LOWER, K_UPPER, K_DIGIT, K_SPACE, K_WS, K_NL, K_PUNCT, K_LETTER, K_SYM = range(9)

_ASCII_KIND = []
for _o in range(128):
    _ch = chr(_o)
    if "a" <= _ch <= "z":
        _ASCII_KIND.append(K_LOWER)
    elif "A" <= _ch <= "Z":
        _ASCII_KIND.append(K_UPPER)
    elif "0" <= _ch <= "9":
        _ASCII_KIND.append(K_DIGIT)
    elif _ch == " ":
        _ASCII_KIND.append(K_SPACE)
    elif _ch in "\r\n":
        _ASCII_KIND.append(K_NL)
    elif _ch in "\t\x0b\x0c":
        _ASCII_KIND.append(K_WS)
    else:
        _ASCII_KIND.append(K_PUNCT)
del _o, _ch

# script groups of letters (index into the WORD tables)
G_ASCII, G_LATX, G_CYR, G_SEM, G_INDIC, G_HAN, G_KANA, G_HANGUL, G_OTHER = range(9)
N_GROUPS = 9


def _script(o):
    """Script group of a non-ASCII letter or mark code point (coarse block ranges)."""
    if o < 0x370 or 0x1E00 <= o < 0x1F00 or 0x2C60 <= o < 0x2C80 or 0xA720 <= o < 0xA800:
        return G_LATX
    if o < 0x590 or 0x10A0 <= o < 0x1100 or 0x1F00 <= o < 0x2000:
        return G_CYR
    if o < 0x900:
        return G_SEM
    if o < 0x1100 or 0x1780 <= o < 0x1800:
        return G_INDIC
    if o < 0x1200 or 0x3130 <= o < 0x3190 or 0xAC00 <= o < 0xD7B0:
        return G_HANGUL
    if 0x3040 <= o < 0x3100 or 0x31F0 <= o < 0x3200 or 0xFF66 <= o < 0xFFA0:
        return G_KANA
    if 0x2E80 <= o < 0x3000 or 0x3400 <= o < 0xA000 or 0xF900 <= o < 0xFB00 or o >= 0x20000:
        return G_HAN
    return G_OTHER


def _is_mark(o):
    """Combining marks that the split pattern counts as letters (\\p{M}), by block."""
    return (0x300 <= o < 0x370 or 0x483 <= o < 0x48A or 0x591 <= o < 0x5C8
            or 0x610 <= o < 0x61B or 0x64B <= o < 0x660 or o == 0x670 or 0x6D6 <= o < 0x6EE
            or 0x900 <= o < 0xE00 or 0xE31 <= o < 0xE3B or 0xE47 <= o < 0xE4F
            or 0x1AB0 <= o < 0x1B00 or 0x1DC0 <= o < 0x1E00 or 0x20D0 <= o < 0x2100
            or 0x3099 <= o < 0x309B or 0xFE20 <= o < 0xFE30)


def _kind(ch):
    """(kind, script group, is_upper) of one character."""
    o = ord(ch)
    if o < 128:
        k = _ASCII_KIND[o]
        return k, G_ASCII, k == K_UPPER
    if ch.isspace():
        return K_WS, 0, False
    if ch.isalpha() or _is_mark(o):
        return K_LETTER, _script(o), ch.isupper()
    if ch.isnumeric():
        return K_DIGIT, 0, False
    return K_SYM, 0, False


def _utf8_len(o):
    return 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4


def _run_cost(table, slope, n):
    last = len(table) - 1
    if n <= last:
        return table[n]
    return table[last] + (n - last) * slope


_C_STMD = (0x73, 0x74, 0x6D, 0x64)  # s t m d


def _contraction(text, j, n):
    """Length of an 's/'t/'re/'ve/'m/'ll/'d suffix at text[j] (0 if none)."""
    if j + 1 >= n or text[j] != "'":
        return 0
    a = ord(text[j + 1]) | 0x20  # ASCII lower case; non-ASCII never matches
    if a in _C_STMD:
        return 2
    if j + 2 < n:
        b = ord(text[j + 2]) | 0x20
        if (a == 0x72 and b == 0x65) or (a == 0x76 and b == 0x65) or (a == 0x6C and b == 0x6C):
            return 3  # 're 've 'll
    return 0


def _ws_group(text, start, end, plain):
    """0 when text[start:end] is all `plain` (spaces, or line feeds), else 1: runs of
    tabs or mixed whitespace tokenize differently from runs of one character."""
    for k in range(start, end):
        if text[k] != plain:
            return 1
    return 0


def _pieces(text):
    """Yield (kind, group, prefix, length, start, end) for each estimated piece.

    kind: K_LETTER (group = script, prefix 0 none/1 whitespace/2 other char), K_DIGIT
    (length = digits), K_PUNCT / K_SYM (prefix 1 when a space leads; length in UTF-8
    bytes), K_NL (whitespace ending in a line break), K_WS (other whitespace); for these
    two, group 0 is a run of line feeds or spaces only, group 1 anything mixed."""
    n = len(text)
    i = 0
    prefix = 0
    space_lead = 0
    while i < n:
        k, g, up = _kind(text[i])
        if k == K_LOWER or k == K_UPPER or k == K_LETTER:
            start = i - 1 if prefix else i
            counts = [0] * N_GROUPS
            prev_upper = True
            j = i
            while j < n:
                k2, g2, up2 = _kind(text[j])
                if not (k2 == K_LOWER or k2 == K_UPPER or k2 == K_LETTER):
                    break
                if up2 and not prev_upper:
                    break
                prev_upper = up2
                counts[g2] += 1
                j += 1
            length = j - i
            c = _contraction(text, j, n)
            if c:
                length += c - 1
                j += c
            best = 0
            for gi in range(1, N_GROUPS):
                if counts[gi] > counts[best]:
                    best = gi
            if best == G_ASCII and counts[G_LATX]:
                best = G_LATX
            yield K_LETTER, best, prefix, length, start, j
            prefix = 0
            i = j
        elif k == K_DIGIT:
            j = i + 1
            while j < n and _kind(text[j])[0] == K_DIGIT:
                j += 1
            yield K_DIGIT, 0, 0, j - i, i, j
            i = j
        elif k == K_SPACE or k == K_WS or k == K_NL:
            j = i
            last_nl = -1
            while j < n:
                k2 = _kind(text[j])[0]
                if k2 == K_NL:
                    last_nl = j
                elif not (k2 == K_SPACE or k2 == K_WS):
                    break
                j += 1
            rest = i
            if last_nl >= 0:
                yield K_NL, _ws_group(text, i, last_nl + 1, "\n"), 0, last_nl + 1 - i, i, last_nl + 1
                rest = last_nl + 1
            r = j - rest
            if r > 0 and j < n:
                nk = _kind(text[j])[0]
                if nk == K_LOWER or nk == K_UPPER or nk == K_LETTER:
                    prefix = 1
                    r -= 1
                elif (nk == K_PUNCT or nk == K_SYM) and text[j - 1] == " ":
                    space_lead = 1
                    r -= 1
                elif nk == K_DIGIT and r > 1:
                    yield K_WS, _ws_group(text, rest, j - 1, " "), 0, r - 1, rest, j - 1
                    rest = j - 1
                    r = 1
            if r > 0:
                yield K_WS, _ws_group(text, rest, rest + r, " "), 0, r, rest, rest + r
            i = j
        else:
            j = i
            nbytes = 0
            sym = False
            while j < n:
                ch = text[j]
                k2 = _kind(ch)[0]
                if k2 == K_PUNCT:
                    nbytes += 1
                elif k2 == K_SYM:
                    nbytes += _utf8_len(ord(ch))
                    sym = True
                else:
                    break
                j += 1
            if j - i == 1 and not space_lead and j < n and _kind(text[j])[0] in (K_LOWER, K_UPPER, K_LETTER):
                prefix = 2
                i = j
                continue
            while j < n and (text[j] == "\n" or text[j] == "\r"):
                nbytes += 1
                j += 1
            start = i - space_lead
            yield (K_SYM if sym else K_PUNCT), 0, space_lead, nbytes, start, j
            space_lead = 0
            i = j


def _piece_cost(kind, group, prefix, length):
    """Milli-tokens of one piece."""
    if kind == K_LETTER:
        return _run_cost(_T.WORD[group][prefix], _T.WORD_SLOPE[group], length)
    if kind == K_DIGIT:
        return (length + 2) // 3 * 1000
    if kind == K_PUNCT:
        return _run_cost(_T.PUNCT[prefix], _T.PUNCT_SLOPE, length)
    if kind == K_SYM:
        return _run_cost(_T.SYM[prefix], _T.SYM_SLOPE, length)
    if kind == K_NL:
        return _T.NL[group][length]
    return _T.WS[group][length]


WS_SHORT = 16  # whitespace pieces up to this long cost a table entry; longer ones, by parts


def _ws_type(ch):
    return 0 if ch == " " else 1 if ch == "\t" else 2 if ch == "\n" or ch == "\r" else 3


def _long_ws_cost(text, start, end):
    """A long whitespace piece: the sum of its runs of spaces, tabs, line breaks and other
    whitespace, each priced like a homogeneous run of that length (RUN tables)."""
    total = 0
    k = start
    while k < end:
        t = _ws_type(text[k])
        m = k + 1
        while m < end and _ws_type(text[m]) == t:
            m += 1
        total += _run_cost(_T.RUN[t], _T.RUN_SLOPE[t], m - k)
        k = m
    return total


def count_text_tokens(text: str) -> int:
    """Estimated o200k_base token count of `text` (the hot-path estimator).

    Linear time in len(text) whatever its content; see bench/bench_fast.py for the error
    against exact counts by content type. Empty text is 0 tokens."""
    total = 0
    for kind, group, prefix, length, start, end in _pieces(text):
        if (kind == K_NL or kind == K_WS) and length > WS_SHORT:
            total += _long_ws_cost(text, start, end)
        else:
            total += _piece_cost(kind, group, prefix, length)
    return (total + 500) // 1000


count_chat_tokens = make_count_chat(count_text_tokens)


# Delta extraction from OpenAI stream chunks

# What a chunk's `shape` (extract_chunk's last value) says: which fast path may pass it on
# from the values extracted alone, without the whole object.
SHAPE_OTHER = 0    # anything else: read the whole object
SHAPE_CHOICES = 1  # a `choices` list holding an object, and no out-of-band top-level key
SHAPE_SIMPLE = 2   # that, with one choice (index 0) whose delta holds only content


def extract_chunk(data: bytes) -> tuple:
    """What accounting and the stream relay need from one `chat.completion.chunk` payload.

    Returns (content, tool_args, finish_reason, usage, is_error, shape):
    content: every choice's `delta.content` string joined (in order), "" when none;
    tool_args: every `delta.tool_calls[*].function.arguments` string joined, "" when none;
    finish_reason: the last non-empty string `finish_reason` among the choices, else None;
    usage: the top-level `usage` object when it is a non-empty object, else None;
    is_error: the payload is an object with an `error` key and no `choices` key;
    shape: SHAPE_OTHER, SHAPE_CHOICES or SHAPE_SIMPLE (see `_shape`).
    Values of unexpected types are ignored, as are all other fields. A payload that is
    valid JSON but not an object gives ("", "", None, None, False, SHAPE_OTHER). Invalid
    JSON raises ValueError (orjson.JSONDecodeError). This function is the definition: the
    compiled twin scans the bytes without building the whole object and must agree on every
    input.
    """
    return _extract_obj(orjson.loads(data))


def _shape(obj: dict) -> int:
    """SHAPE_CHOICES: `choices` is a list with at least one object, and neither `error`
    (OpenRouter's mid-stream error beside choices) nor `x_groq` (Groq's usage) is a top-level
    key. SHAPE_SIMPLE: besides, `choices` holds exactly one object, its `index` is absent or
    the integer 0, and its `delta` is absent, null or an object whose `content` is absent,
    null or a string, whose `role` is absent, null or "assistant", and whose every other
    member is null. Such a chunk adds only content and a finish reason to choice 0."""
    if "error" in obj or "x_groq" in obj:
        return SHAPE_OTHER
    choices = obj.get("choices")
    if type(choices) is not list or not any(type(c) is dict for c in choices):
        return SHAPE_OTHER
    if len(choices) != 1:
        return SHAPE_CHOICES
    choice = choices[0]
    index = choice.get("index", 0)
    if type(index) is not int or index != 0:
        return SHAPE_CHOICES
    delta = choice.get("delta")
    if delta is None:
        return SHAPE_SIMPLE
    if type(delta) is not dict:
        return SHAPE_CHOICES
    for key, value in delta.items():
        if value is None:
            continue
        if key == "content":
            if type(value) is not str:
                return SHAPE_CHOICES
        elif key != "role" or value != "assistant":
            return SHAPE_CHOICES
    return SHAPE_SIMPLE


def _extract_obj(obj) -> tuple:
    if type(obj) is not dict:
        return ("", "", None, None, False, SHAPE_OTHER)
    is_error = "error" in obj and "choices" not in obj
    usage = obj.get("usage")
    if type(usage) is not dict or not usage:
        usage = None
    content, args = [], []
    finish = None
    choices = obj.get("choices")
    if type(choices) is list:
        for choice in choices:
            if type(choice) is not dict:
                continue
            delta = choice.get("delta")
            if type(delta) is dict:
                text = delta.get("content")
                if type(text) is str:
                    content.append(text)
                calls = delta.get("tool_calls")
                if type(calls) is list:
                    for call in calls:
                        if type(call) is dict:
                            fn = call.get("function")
                            if type(fn) is dict:
                                a = fn.get("arguments")
                                if type(a) is str:
                                    args.append(a)
            reason = choice.get("finish_reason")
            if type(reason) is str and reason:
                finish = reason
    return ("".join(content), "".join(args), finish, usage, is_error, _shape(obj))


# Cache keys

# Fields that cannot change the answer: transport (stream, stream_options), bookkeeping
# (user, metadata, store, request ids, prompt_cache_key, safety_identifier) and the
# service tier (price and queueing, not content). Everything else counts, including
# fields this list has never heard of: an unknown field might change the answer.
CACHE_EXCLUDED = frozenset({
    "stream", "stream_options", "user", "metadata", "store", "service_tier",
    "request_id", "x_request_id", "prompt_cache_key", "safety_identifier",
})
_CACHE_PREFIX = b"faregate-cache-v1\x00"
_EXACT_INT = 9007199254740992.0  # 2**53: integral floats beyond it stay floats


def _canon(value):
    """The value with integral floats made ints (1.0 -> 1); shares unchanged containers."""
    t = type(value)
    if t is float:
        if value.is_integer() and -_EXACT_INT <= value <= _EXACT_INT:
            return int(value)
        return value
    if t is dict:
        out = None
        for k, v in value.items():
            c = _canon(v)
            if c is not v:
                if out is None:
                    out = dict(value)
                out[k] = c
        return value if out is None else out
    if t is list or t is tuple:
        out = None
        for i, v in enumerate(value):
            c = _canon(v)
            if c is not v:
                if out is None:
                    out = list(value)
                out[i] = c
        return value if out is None else out
    return value


def _single_text_part(content) -> bool:
    return (type(content) is list and len(content) == 1 and type(content[0]) is dict
            and len(content[0]) == 2 and content[0].get("type") == "text"
            and type(content[0].get("text")) is str)


def _canon_message(msg):
    if type(msg) is not dict:
        return _canon(msg)
    content = msg.get("content")
    single = _single_text_part(content)
    if not (single or type(msg.get("tool_calls")) is list
            or ("name" in msg and msg["name"] is None)
            or ("tool_call_id" in msg and msg["tool_call_id"] is None)):
        return _canon(msg)  # nothing to rewrite: no copy
    out = dict(msg)
    if single:
        out["content"] = content[0]["text"]
    calls = out.get("tool_calls")
    if type(calls) is list:
        new_calls = []
        for call in calls:
            if type(call) is dict and type(call.get("function")) is dict:
                fn = call["function"]
                args = fn.get("arguments")
                if type(args) is str:
                    try:
                        parsed = orjson.loads(args)
                    except orjson.JSONDecodeError:
                        pass
                    else:
                        fn = dict(fn)
                        fn["arguments"] = {"$json": _canon(parsed)}
                        call = dict(call)
                        call["function"] = fn
            new_calls.append(call)
        out["tool_calls"] = new_calls
    for k in ("name", "tool_call_id"):
        if out.get(k) is None:
            out.pop(k, None)
    return _canon(out)


def _canonical_body(body: dict) -> dict:
    out = {}
    for k, v in body.items():
        if k in CACHE_EXCLUDED or v is None:
            continue
        if k == "max_completion_tokens":
            k = "max_tokens"
        elif k == "max_tokens" and body.get("max_completion_tokens") is not None:
            continue
        if k == "messages" and type(v) is list:
            out[k] = [_canon_message(m) for m in v]
        else:
            out[k] = _canon(v)
    return out


def cache_key(body: dict, route: str, scope: str = "") -> bytes:
    """A 16-byte key of a chat request: equal keys mean the same answer may be served.

    Canonical form: keys sorted at every level; top-level fields in CACHE_EXCLUDED and
    top-level nulls dropped (null means "the default", as absence does); floats equal to
    an integer written as that integer (1.0 == 1); `max_completion_tokens` and
    `max_tokens` are one field (max_completion_tokens wins when both are set); a message
    content that is a single text part equals the plain string; a tool call's `arguments`
    string that parses as JSON is compared as that JSON (whitespace and key order in it do
    not matter). Absent and explicit-default values differ (temperature absent != 1):
    defaults are the provider's and can change, and a miss only costs money while a wrong
    hit is wrong. `route` (the resolved alias) and `scope` (e.g. tenant) are part of the
    key. Hash: blake2b-128 of orjson's sorted serialization, so the key is the same in
    every process and on every machine (no PYTHONHASHSEED dependence). Bodies are as
    decoded from JSON (str keys; NaN/inf cannot occur).
    """
    canon = orjson.dumps(_canonical_body(body), option=_DUMPS_OPTS)
    data = _CACHE_PREFIX + orjson.dumps([route, scope]) + b"\x00" + canon
    return hashlib.blake2b(data, digest_size=16).digest()


def cache_key_hex(body: dict, route: str, scope: str = "") -> str:
    """`cache_key` as 32 lowercase hex characters."""
    return cache_key(body, route, scope).hex()


_DUMPS_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


# Weighted selection

class WeightedPicker:
    """Pick index i with probability weights[i] / sum(weights), in O(log N).

    Built once from the weights (cumulative sums), then `pick(u)` per request with u
    uniform in [0, 1): the caller passes the random number, so the pick is a pure function
    and tests can replay it (`choose(rng)` takes a random.Random). A zero weight is never
    picked. All weights zero (or an empty list) is allowed, for a route whose deployments
    are all cooling down: `pick` then returns -1. Negative, NaN or infinite weights raise
    ValueError. `replace(weights)` builds the new tables first and installs them with one
    attribute assignment: under asyncio (one thread) no pick can see a half-built state,
    and under threads a pick sees either the old or the new weights.
    """

    __slots__ = ("_state",)

    def __init__(self, weights):
        self._state = self._build(weights)

    @staticmethod
    def _build(weights):
        cum = []
        ws = []
        total = 0.0
        last = -1
        for i, w in enumerate(weights):
            w = float(w)
            if not (0.0 <= w < math.inf):
                raise ValueError(f"weight {i} is {w!r}: weights must be finite and >= 0")
            total += w
            cum.append(total)
            ws.append(w)
            if w > 0.0:
                last = i
        return (cum, tuple(ws), total, last)

    def replace(self, weights) -> None:
        self._state = self._build(weights)

    @property
    def weights(self) -> tuple:
        return self._state[1]

    @property
    def total(self) -> float:
        return self._state[2]

    def __len__(self) -> int:
        return len(self._state[1])

    def pick(self, u: float) -> int:
        cum, _ws, total, last = self._state
        if last < 0:
            return -1
        i = bisect.bisect_right(cum, u * total)
        return i if i <= last else last

    def pick_excluding(self, u: float, excluded) -> int:
        """Pick among the indices not in `excluded` (failover), O(N); -1 if none left."""
        _cum, ws, _total, _last = self._state
        remaining = 0.0
        for i, w in enumerate(ws):
            if i not in excluded:
                remaining += w
        if remaining <= 0.0:
            return -1
        target = u * remaining
        acc = 0.0
        chosen = -1
        for i, w in enumerate(ws):
            if w > 0.0 and i not in excluded:
                acc += w
                chosen = i
                if acc > target:
                    return i
        return chosen

    def choose(self, rng) -> int:
        """`pick(rng.random())`: the seedable form for tests and simulations."""
        return self.pick(rng.random())


# Latency windows

# Log-scale bins: 16 per power of two, linear inside each octave, from 2**-4 ms to 2**24 ms
# (about 4.7 hours); bin 0 holds smaller values, the last bin larger ones. A quantile is
# reported as the midpoint of its bin: relative error at most 1/32 (3.1%) inside the range.
LW_SUB = 16
LW_EMIN = -3          # frexp exponent of the smallest tracked value (2**-4 ms)
LW_EMAX = 25          # frexp exponent past the largest tracked value (2**24 ms)
LW_BINS = (LW_EMAX - LW_EMIN) * LW_SUB + 2


def latency_bin(value: float) -> int:
    """Histogram bin of a latency in milliseconds."""
    if not value > 0.0:
        return 0
    m, e = math.frexp(value)
    if e < LW_EMIN:
        return 0
    if e >= LW_EMAX:
        return LW_BINS - 1
    return (e - LW_EMIN) * LW_SUB + int((m - 0.5) * (2 * LW_SUB)) + 1


def latency_bin_value(b: int) -> float:
    """The value a bin reports: its midpoint (the range's ends for the outer bins)."""
    if b <= 0:
        return math.ldexp(0.5, LW_EMIN)
    if b >= LW_BINS - 1:
        return math.ldexp(0.5, LW_EMAX)
    e, s = divmod(b - 1, LW_SUB)
    return math.ldexp(0.5 + (s + 0.5) / (2 * LW_SUB), e + LW_EMIN)


class LatencyWindow:
    """Rolling latency and error statistics over the last `window_s` seconds.

    Time is passed in (`now`, seconds, any monotonic clock) so the window is deterministic.
    The window is a ring of `slices` time slices (window_s / slices seconds each); each
    slice keeps a log-scale histogram (see latency_bin) and ok/error counts, and a running
    total histogram is kept so a quantile costs one scan of the bins, not a merge. A
    sample is forgotten when its slice leaves the ring: the window covers between
    window_s - window_s/slices and window_s seconds. A `now` older than the newest slice
    is counted in the newest slice (clocks are not expected to run backwards). Quantiles
    are bin midpoints (<= 3.1% relative error), or None with no samples.
    """

    def __init__(self, window_s: float = 60.0, slices: int = 12):
        if not window_s > 0 or slices < 1:
            raise ValueError("window_s must be > 0 and slices >= 1")
        self.window_s = float(window_s)
        self.slices = int(slices)
        self._slice_s = self.window_s / self.slices
        self._hist = [[0] * LW_BINS for _ in range(self.slices)]
        self._ok = [0] * self.slices
        self._err = [0] * self.slices
        self._total = [0] * LW_BINS
        self._n_ok = 0
        self._n_err = 0
        self._head = None  # slice number of the newest slice

    def _advance(self, now: float) -> int:
        sid = math.floor(now / self._slice_s)
        head = self._head
        if head is None:
            self._head = sid
            return sid % self.slices
        if sid <= head:
            return head % self.slices
        steps = sid - head
        if steps > self.slices:
            steps = self.slices
        for k in range(1, steps + 1):
            idx = (head + k) % self.slices
            self._expire(idx)
        self._head = sid
        return sid % self.slices

    def _expire(self, idx: int) -> None:
        h = self._hist[idx]
        total = self._total
        for b in range(LW_BINS):
            if h[b]:
                total[b] -= h[b]
                h[b] = 0
        self._n_ok -= self._ok[idx]
        self._n_err -= self._err[idx]
        self._ok[idx] = 0
        self._err[idx] = 0

    def observe(self, latency_ms: float, ok: bool, now: float) -> None:
        idx = self._advance(now)
        b = latency_bin(latency_ms)
        self._hist[idx][b] += 1
        self._total[b] += 1
        if ok:
            self._ok[idx] += 1
            self._n_ok += 1
        else:
            self._err[idx] += 1
            self._n_err += 1

    def count(self, now: float) -> int:
        self._advance(now)
        return self._n_ok + self._n_err

    def error_rate(self, now: float) -> float | None:
        """Errors / samples in the window, None with no samples."""
        self._advance(now)
        n = self._n_ok + self._n_err
        return self._n_err / n if n else None

    def quantile(self, q: float, now: float) -> float | None:
        """The q-quantile (0 <= q <= 1) of latencies in the window, in ms."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q!r} is not in [0, 1]")
        self._advance(now)
        n = self._n_ok + self._n_err
        if not n:
            return None
        rank = math.ceil(q * n)
        if rank < 1:
            rank = 1
        acc = 0
        total = self._total
        for b in range(LW_BINS):
            acc += total[b]
            if acc >= rank:
                return latency_bin_value(b)
        return latency_bin_value(LW_BINS - 1)

    def p50(self, now: float) -> float | None:
        return self.quantile(0.50, now)

    def p95(self, now: float) -> float | None:
        return self.quantile(0.95, now)

    def p99(self, now: float) -> float | None:
        return self.quantile(0.99, now)
