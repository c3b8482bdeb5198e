# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Hot-path kernels, compiled. Same names and behaviour as `_hotpath_py.py`, whose
docstrings are the contract; tests run both and property tests check that they agree.
Tables and constants are read from the twin (and `_token_tables`) at import, so the two
cannot drift apart."""

import hashlib

import orjson

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport INFINITY, ceil, floor, frexp, ldexp
from libc.string cimport memchr, memcmp, memset

from . import _hotpath_py as _py
from . import _token_tables as _T
from ._chat import make_count_chat


cdef extern from "Python.h":
    Py_ssize_t PyUnicode_GET_LENGTH(object u)
    int PyUnicode_KIND(object u)
    void* PyUnicode_DATA(object u)
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil


orjson_loads = orjson.loads

__all__ = ["SSEEvent", "SSEParser", "encode_sse", "extract_chunk", "count_text_tokens",
           "count_chat_tokens", "cache_key", "cache_key_hex", "CACHE_EXCLUDED",
           "WeightedPicker", "LatencyWindow"]


cdef class SSEEvent:
    cdef public object event
    cdef public bytes data
    cdef public object id
    cdef public object retry

    def __init__(self, event, bytes data, id=None, retry=None):
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


cdef inline SSEEvent _new_event(object event, bytes data, object id_, object retry):
    cdef SSEEvent ev = SSEEvent.__new__(SSEEvent)
    ev.event = event
    ev.data = data
    ev.id = id_
    ev.retry = retry
    return ev


cdef class SSEParser:
    """Scans with memchr straight over the incoming chunk when no partial line is pending
    (the common case: no copy into the buffer), and builds `data:` values directly from
    the line's bytes (bench_fast: sse_parse)."""
    cdef bytearray _buf
    cdef bint _skip_lf
    cdef list _data
    cdef object _event
    cdef object _last_id
    cdef object _retry

    def __init__(self):
        self._buf = bytearray()
        self._skip_lf = False
        self._data = None
        self._event = None
        self._last_id = None
        self._retry = None

    def feed(self, chunk):
        cdef list events = []
        cdef bytes data
        cdef const unsigned char* p
        cdef Py_ssize_t n, start
        if not chunk:
            return events
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        data = <bytes>chunk
        p = <const unsigned char*>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
        start = 0
        if self._skip_lf:
            self._skip_lf = False
            if p[0] == 10:
                start = 1
        if len(self._buf):
            # a pending partial line never holds a line break: without one in the chunk,
            # appending is all there is to do (keeps one long line split into many
            # chunks linear)
            if (memchr(p + start, 10, n - start) == NULL
                    and memchr(p + start, 13, n - start) == NULL):
                self._buf += data[start:]
                return events
            self._buf += data[start:]
            data = bytes(self._buf)
            self._buf = bytearray()
            p = <const unsigned char*>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
            start = 0
        start = self._scan(p, start, n, events)
        if start < n:
            self._buf += data[start:]
        return events

    cdef Py_ssize_t _scan(self, const unsigned char* p, Py_ssize_t start, Py_ssize_t n,
                          list events) except -1:
        cdef const unsigned char* nl
        cdef const unsigned char* cr
        cdef Py_ssize_t end, nxt
        while start < n:
            nl = <const unsigned char*>memchr(p + start, 10, n - start)
            cr = <const unsigned char*>memchr(p + start, 13, (nl - p if nl != NULL else n) - start)
            if cr != NULL:
                end = cr - p
                if end + 1 < n:
                    nxt = end + 2 if p[end + 1] == 10 else end + 1
                else:
                    nxt = end + 1
                    self._skip_lf = True
            elif nl != NULL:
                end = nl - p
                nxt = end + 1
            else:
                break
            self._line(p, start, end, events)
            start = nxt
        return start

    def close(self):
        self._buf = bytearray()
        self._data = None
        self._event = None
        self._retry = None
        return []

    cdef int _line(self, const unsigned char* p, Py_ssize_t s, Py_ssize_t e,
                   list events) except -1:
        cdef Py_ssize_t n = e - s, colon, vs
        cdef bytes value, field
        cdef const unsigned char* hit
        if n == 0:
            if self._data is not None:
                if len(self._data) == 1:
                    value = self._data[0]
                else:
                    value = b"\n".join(self._data)
                events.append(_new_event(self._event, value, self._last_id, self._retry))
            self._data = None
            self._event = None
            self._retry = None
            return 0
        if p[s] == 58:
            return 0
        hit = <const unsigned char*>memchr(p + s, 58, n)
        if hit == NULL:
            field = PyBytes_FromStringAndSize(<const char*>p + s, n)
            value = b""
        else:
            colon = hit - p
            vs = colon + 2 if (colon + 1 < e and p[colon + 1] == 32) else colon + 1
            if colon - s == 4 and memcmp(p + s, b"data", 4) == 0:
                value = PyBytes_FromStringAndSize(<const char*>p + vs, e - vs)
                if self._data is None:
                    self._data = [value]
                else:
                    self._data.append(value)
                return 0
            field = PyBytes_FromStringAndSize(<const char*>p + s, colon - s)
            value = PyBytes_FromStringAndSize(<const char*>p + vs, e - vs)
        if field == b"event":
            self._event = value.decode("utf-8", "replace")
        elif field == b"data":
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
        return 0


def encode_sse(bytes data, event=None):
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"".join([b"data: " + line + b"\n" for line in lines])
    else:
        body = b"data: " + data + b"\n"
    if event is not None:
        return b"event: " + event.encode() + b"\n" + body + b"\n"
    return body + b"\n"


# Token estimation: a port of _hotpath_py._pieces / _piece_cost, one pass over the code
# points with no Python objects (bench_fast: count_text_tokens).


cdef enum:
    K_LOWER = 0
    K_UPPER = 1
    K_DIGIT = 2
    K_SPACE = 3
    K_WS = 4
    K_NL = 5
    K_PUNCT = 6
    K_LETTER = 7
    K_SYM = 8
    N_GROUPS = 9
    G_LATX = 1
    WORD_LEN = 25
    PUNCT_LEN = 17
    SYM_LEN = 33
    NL_LEN = 17
    RUN_LEN = 65
    WS_SHORT = 16
    WS_LEN = 17


ctypedef fused uchar_t:
    unsigned char       # PyUnicode_1BYTE_KIND
    unsigned short      # PyUnicode_2BYTE_KIND
    unsigned int        # PyUnicode_4BYTE_KIND

cdef unsigned char ASCII_KIND[128]
cdef long long T_WORD[N_GROUPS][3][WORD_LEN]
cdef long long T_WORD_SLOPE[N_GROUPS]
cdef long long T_PUNCT[2][PUNCT_LEN]
cdef long long T_SYM[2][SYM_LEN]
cdef long long T_NL[2][NL_LEN]
cdef long long T_WS[2][WS_LEN]
cdef long long T_RUN[4][RUN_LEN]
cdef long long T_RUN_SLOPE[4]
cdef long long T_PUNCT_SLOPE, T_SYM_SLOPE


cdef void _load_tables() except *:
    global T_PUNCT_SLOPE, T_SYM_SLOPE
    cdef int g, p, n
    for n in range(128):
        ASCII_KIND[n] = _py._ASCII_KIND[n]
    assert len(_T.WORD) == N_GROUPS and len(_T.WORD[0][0]) == WORD_LEN
    assert len(_T.PUNCT[0]) == PUNCT_LEN and len(_T.SYM[0]) == SYM_LEN
    assert len(_T.NL[0]) == NL_LEN and len(_T.WS[0]) == WS_LEN
    for g in range(N_GROUPS):
        T_WORD_SLOPE[g] = _T.WORD_SLOPE[g]
        for p in range(3):
            for n in range(WORD_LEN):
                T_WORD[g][p][n] = _T.WORD[g][p][n]
    for p in range(2):
        for n in range(PUNCT_LEN):
            T_PUNCT[p][n] = _T.PUNCT[p][n]
        for n in range(SYM_LEN):
            T_SYM[p][n] = _T.SYM[p][n]
    for p in range(2):
        for n in range(NL_LEN):
            T_NL[p][n] = _T.NL[p][n]
        for n in range(WS_LEN):
            T_WS[p][n] = _T.WS[p][n]
    T_PUNCT_SLOPE = _T.PUNCT_SLOPE
    T_SYM_SLOPE = _T.SYM_SLOPE
    assert len(_T.RUN[0]) == RUN_LEN and NL_LEN == WS_LEN == _py.WS_SHORT + 1
    for p in range(4):
        T_RUN_SLOPE[p] = _T.RUN_SLOPE[p]
        for n in range(RUN_LEN):
            T_RUN[p][n] = _T.RUN[p][n]


_load_tables()


cdef inline int _script(Py_UCS4 o) noexcept nogil:
    if o < 0x370 or 0x1E00 <= o < 0x1F00 or 0x2C60 <= o < 0x2C80 or 0xA720 <= o < 0xA800:
        return 1
    if o < 0x590 or 0x10A0 <= o < 0x1100 or 0x1F00 <= o < 0x2000:
        return 2
    if o < 0x900:
        return 3
    if o < 0x1100 or 0x1780 <= o < 0x1800:
        return 4
    if o < 0x1200 or 0x3130 <= o < 0x3190 or 0xAC00 <= o < 0xD7B0:
        return 7
    if 0x3040 <= o < 0x3100 or 0x31F0 <= o < 0x3200 or 0xFF66 <= o < 0xFFA0:
        return 6
    if 0x2E80 <= o < 0x3000 or 0x3400 <= o < 0xA000 or 0xF900 <= o < 0xFB00 or o >= 0x20000:
        return 5
    return 8


cdef inline bint _is_mark(Py_UCS4 o) noexcept nogil:
    return (0x300 <= o < 0x370 or 0x483 <= o < 0x48A or 0x591 <= o < 0x5C8
            or 0x610 <= o < 0x61B or 0x64B <= o < 0x660 or o == 0x670 or 0x6D6 <= o < 0x6EE
            or 0x900 <= o < 0xE00 or 0xE31 <= o < 0xE3B or 0xE47 <= o < 0xE4F
            or 0x1AB0 <= o < 0x1B00 or 0x1DC0 <= o < 0x1E00 or 0x20D0 <= o < 0x2100
            or 0x3099 <= o < 0x309B or 0xFE20 <= o < 0xFE30)


cdef inline int _kind_full(Py_UCS4 ch, int* group, bint* up):
    cdef int k
    if ch < 128:
        k = ASCII_KIND[ch]
        group[0] = 0
        up[0] = k == K_UPPER
        return k
    group[0] = 0
    up[0] = False
    if ch.isspace():
        return K_WS
    if ch.isalpha() or _is_mark(ch):
        group[0] = _script(ch)
        up[0] = ch.isupper()
        return K_LETTER
    if ch.isnumeric():
        return K_DIGIT
    return K_SYM


cdef inline int _kind1(Py_UCS4 ch):
    cdef int g
    cdef bint up
    if ch < 128:
        return ASCII_KIND[ch]
    return _kind_full(ch, &g, &up)


cdef inline bint _is_letter(int k) noexcept nogil:
    return k == K_LOWER or k == K_UPPER or k == K_LETTER


cdef inline long long _run(const long long* table, Py_ssize_t size, long long slope,
                           Py_ssize_t n) noexcept nogil:
    if n < size:
        return table[n]
    return table[size - 1] + (n - (size - 1)) * slope


cdef inline int _utf8_len(Py_UCS4 o) noexcept nogil:
    return 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4


cdef inline int _ws_group(const uchar_t* data, Py_ssize_t start, Py_ssize_t end,
                          unsigned int plain) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(start, end):
        if data[k] != plain:
            return 1
    return 0


cdef inline int _ws_type(unsigned int ch) noexcept nogil:
    return 0 if ch == 32 else 1 if ch == 9 else 2 if ch == 10 or ch == 13 else 3


cdef inline long long _ws_cost(const uchar_t* data, Py_ssize_t start, Py_ssize_t end,
                               unsigned int plain, const long long* short_table) noexcept nogil:
    """Twin of _hotpath_py._piece_cost / _long_ws_cost for a whitespace piece."""
    cdef Py_ssize_t n = end - start, k, m
    cdef long long total = 0
    cdef int t
    if n <= WS_SHORT:
        return short_table[_ws_group(data, start, end, plain) * (WS_SHORT + 1) + n]
    k = start
    while k < end:
        t = _ws_type(data[k])
        m = k + 1
        while m < end and _ws_type(data[m]) == t:
            m += 1
        total += _run(&T_RUN[t][0], RUN_LEN, T_RUN_SLOPE[t], m - k)
        k = m
    return total


cdef inline int _contraction(const uchar_t* data, Py_ssize_t j, Py_ssize_t n) noexcept nogil:
    cdef unsigned int a, b
    if j + 1 >= n or data[j] != 39:
        return 0
    a = <unsigned int>data[j + 1] | 0x20
    if a == 0x73 or a == 0x74 or a == 0x6D or a == 0x64:
        return 2
    if j + 2 < n:
        b = <unsigned int>data[j + 2] | 0x20
        if (a == 0x72 and b == 0x65) or (a == 0x76 and b == 0x65) or (a == 0x6C and b == 0x6C):
            return 3
    return 0


cdef long long _estimate_milli(const uchar_t* data, Py_ssize_t n) except -1:
    """One specialisation per string kind (1, 2 or 4 bytes per code point): no per-character
    kind switch (bench_fast: count_text_tokens, estimator speed vs exact)."""
    cdef Py_ssize_t i = 0, j, last_nl, rest, r, length, nbytes
    cdef long long total = 0
    cdef int prefix = 0, space_lead = 0, k, k2, nk, g, g2, gi, best, c
    cdef bint up, up2, prev_upper, sym
    cdef Py_ssize_t counts[N_GROUPS]
    cdef Py_UCS4 ch
    while i < n:
        ch = data[i]
        k = _kind_full(ch, &g, &up)
        if _is_letter(k):
            prev_upper = True
            j = i
            # ASCII letters first: most words never need the per-script counts
            while j < n:
                ch = data[j]
                if ch >= 128:
                    break
                k2 = ASCII_KIND[ch]
                if k2 > K_UPPER:
                    break
                up2 = k2 == K_UPPER
                if up2 and not prev_upper:
                    break
                prev_upper = up2
                j += 1
            best = 0
            if j < n and data[j] >= 128:
                for gi in range(N_GROUPS):
                    counts[gi] = 0
                counts[0] = j - i
                while j < n:
                    ch = data[j]
                    if ch < 128:
                        k2 = ASCII_KIND[ch]
                        g2 = 0
                        up2 = k2 == K_UPPER
                    else:
                        k2 = _kind_full(ch, &g2, &up2)
                    if not _is_letter(k2):
                        break
                    if up2 and not prev_upper:
                        break
                    prev_upper = up2
                    counts[g2] += 1
                    j += 1
                for gi in range(1, N_GROUPS):
                    if counts[gi] > counts[best]:
                        best = gi
                if best == 0 and counts[G_LATX]:
                    best = G_LATX
            length = j - i
            c = _contraction(data, j, n)
            if c:
                length += c - 1
                j += c
            total += _run(&T_WORD[best][prefix][0], WORD_LEN, T_WORD_SLOPE[best], length)
            prefix = 0
            i = j
        elif k == K_DIGIT:
            j = i + 1
            while j < n and _kind1(data[j]) == K_DIGIT:
                j += 1
            total += (j - i + 2) // 3 * 1000
            i = j
        elif k == K_SPACE or k == K_WS or k == K_NL:
            j = i
            last_nl = -1
            while j < n:
                k2 = _kind1(data[j])
                if k2 == K_NL:
                    last_nl = j
                elif not (k2 == K_SPACE or k2 == K_WS):
                    break
                j += 1
            rest = i
            if last_nl >= 0:
                total += _ws_cost(data, i, last_nl + 1, 10, &T_NL[0][0])
                rest = last_nl + 1
            r = j - rest
            if r > 0 and j < n:
                nk = _kind1(data[j])
                if _is_letter(nk):
                    prefix = 1
                    r -= 1
                elif (nk == K_PUNCT or nk == K_SYM) and data[j - 1] == 32:
                    space_lead = 1
                    r -= 1
                elif nk == K_DIGIT and r > 1:
                    total += _ws_cost(data, rest, j - 1, 32, &T_WS[0][0])
                    rest = j - 1
                    r = 1
            if r > 0:
                total += _ws_cost(data, rest, rest + r, 32, &T_WS[0][0])
            i = j
        else:
            j = i
            nbytes = 0
            sym = False
            while j < n:
                ch = data[j]
                k2 = _kind1(ch)
                if k2 == K_PUNCT:
                    nbytes += 1
                elif k2 == K_SYM:
                    nbytes += _utf8_len(ch)
                    sym = True
                else:
                    break
                j += 1
            if (j - i == 1 and not space_lead and j < n
                    and _is_letter(_kind1(data[j]))):
                prefix = 2
                i = j
                continue
            while j < n:
                ch = data[j]
                if ch != 10 and ch != 13:
                    break
                nbytes += 1
                j += 1
            if sym:
                total += _run(&T_SYM[space_lead][0], SYM_LEN, T_SYM_SLOPE, nbytes)
            else:
                total += _run(&T_PUNCT[space_lead][0], PUNCT_LEN, T_PUNCT_SLOPE, nbytes)
            space_lead = 0
            i = j
    return total


cpdef long count_text_tokens(str text) except -1:
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef const void* data = PyUnicode_DATA(text)
    cdef long long milli
    if kind == 1:
        milli = _estimate_milli(<const unsigned char*>data, n)
    elif kind == 2:
        milli = _estimate_milli(<const unsigned short*>data, n)
    else:
        milli = _estimate_milli(<const unsigned int*>data, n)
    return (milli + 500) // 1000


count_chat_tokens = make_count_chat(count_text_tokens)


# extract_chunk: a validating scanner over the JSON bytes that builds only the strings it
# returns (bench_fast: extract_chunk). Whatever it is not sure about (escaped keys, \u
# surrogates, exponents, long numbers, deep nesting, non-object payloads, invalid JSON)
# goes to the reference, so the result is always the reference's.

cdef enum:
    SC_OK = 0
    SC_FALLBACK = -2
    SC_MAX_DEPTH = 64


cdef unsigned char STR_PLAIN[256]  # bytes a JSON string scan just steps over


cdef void _init_str_plain() noexcept:
    cdef int c
    for c in range(256):
        STR_PLAIN[c] = 32 <= c < 128 and c != 34 and c != 92


_init_str_plain()


cdef struct Scan:
    const unsigned char* p
    Py_ssize_t n
    Py_ssize_t i
    Py_ssize_t s_start     # last string scanned: content between the quotes
    Py_ssize_t s_end
    bint s_escaped


cdef inline void _ws(Scan* s) noexcept nogil:
    cdef unsigned char c
    while s.i < s.n:
        c = s.p[s.i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            s.i += 1
        else:
            return


cdef inline int _hex(unsigned char c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    c |= 0x20
    if 97 <= c <= 102:
        return c - 87
    return -1


cdef int _utf8_ok(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) noexcept nogil:
    """Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF)."""
    cdef unsigned char c, c1
    while i < end:
        c = p[i]
        if c < 0x80:
            i += 1
        elif 0xC2 <= c <= 0xDF:
            if i + 1 >= end or (p[i + 1] & 0xC0) != 0x80:
                return 0
            i += 2
        elif 0xE0 <= c <= 0xEF:
            if i + 2 >= end or (p[i + 1] & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80:
                return 0
            c1 = p[i + 1]
            if (c == 0xE0 and c1 < 0xA0) or (c == 0xED and c1 >= 0xA0):
                return 0
            i += 3
        elif 0xF0 <= c <= 0xF4:
            if (i + 3 >= end or (p[i + 1] & 0xC0) != 0x80 or (p[i + 2] & 0xC0) != 0x80
                    or (p[i + 3] & 0xC0) != 0x80):
                return 0
            c1 = p[i + 1]
            if (c == 0xF0 and c1 < 0x90) or (c == 0xF4 and c1 >= 0x90):
                return 0
            i += 4
        else:
            return 0
    return 1


cdef int _string(Scan* s) noexcept nogil:
    """At an opening quote: validate the string, record its span. -1 invalid, -2 fallback."""
    cdef Py_ssize_t i = s.i + 1
    cdef unsigned char c
    cdef bint nonascii = False
    cdef int h0, h1, h2, h3, cp
    s.s_escaped = False
    s.s_start = i
    while i < s.n:
        c = s.p[i]
        if STR_PLAIN[c]:
            i += 1
            continue
        if c == 34:
            if nonascii and not _utf8_ok(s.p, s.s_start, i):
                return -1
            s.s_end = i
            s.i = i + 1
            return SC_OK
        if c == 92:
            s.s_escaped = True
            if i + 1 >= s.n:
                return -1
            c = s.p[i + 1]
            if c == 117:
                if i + 5 >= s.n:
                    return -1
                h0 = _hex(s.p[i + 2])
                h1 = _hex(s.p[i + 3])
                h2 = _hex(s.p[i + 4])
                h3 = _hex(s.p[i + 5])
                if h0 < 0 or h1 < 0 or h2 < 0 or h3 < 0:
                    return -1
                cp = (h0 << 12) | (h1 << 8) | (h2 << 4) | h3
                if 0xD800 <= cp <= 0xDFFF:
                    return SC_FALLBACK
                i += 6
                continue
            if (c == 34 or c == 92 or c == 47 or c == 98 or c == 102 or c == 110
                    or c == 114 or c == 116):
                i += 2
                continue
            return -1
        if c < 32:
            return -1
        if c >= 0x80:
            nonascii = True
        i += 1
    return -1


cdef int _number(Scan* s) noexcept nogil:
    cdef Py_ssize_t i = s.i, start
    if i < s.n and s.p[i] == 45:
        i += 1
    start = i
    if i >= s.n:
        return -1
    if s.p[i] == 48:
        i += 1
    elif 49 <= s.p[i] <= 57:
        while i < s.n and 48 <= s.p[i] <= 57:
            i += 1
    else:
        return -1
    if i - start > 18:
        return SC_FALLBACK
    if i < s.n and s.p[i] == 46:
        i += 1
        start = i
        while i < s.n and 48 <= s.p[i] <= 57:
            i += 1
        if i == start:
            return -1
        if i - start > 30:
            return SC_FALLBACK
    if i < s.n and (s.p[i] == 101 or s.p[i] == 69):
        return SC_FALLBACK
    s.i = i
    return SC_OK


cdef inline int _literal(Scan* s, const char* word, Py_ssize_t length) noexcept nogil:
    cdef Py_ssize_t k
    if s.i + length > s.n:
        return -1
    for k in range(length):
        if s.p[s.i + k] != <unsigned char>word[k]:
            return -1
    s.i += length
    return SC_OK


cdef int _skip(Scan* s, int depth) noexcept nogil:
    """Validate and skip one value (after whitespace)."""
    cdef unsigned char c
    cdef int r
    if s.i >= s.n:
        return -1
    c = s.p[s.i]
    if c == 34:
        return _string(s)
    if c == 123 or c == 91:
        if depth >= SC_MAX_DEPTH:
            return SC_FALLBACK
        s.i += 1
        _ws(s)
        if s.i < s.n and s.p[s.i] == (125 if c == 123 else 93):
            s.i += 1
            return SC_OK
        while True:
            if c == 123:
                if s.i >= s.n or s.p[s.i] != 34:
                    return -1
                r = _string(s)
                if r:
                    return r
                _ws(s)
                if s.i >= s.n or s.p[s.i] != 58:
                    return -1
                s.i += 1
                _ws(s)
            r = _skip(s, depth + 1)
            if r:
                return r
            _ws(s)
            if s.i >= s.n:
                return -1
            if s.p[s.i] == 44:
                s.i += 1
                _ws(s)
                continue
            if s.p[s.i] == (125 if c == 123 else 93):
                s.i += 1
                return SC_OK
            return -1
    if c == 116:
        return _literal(s, b"true", 4)
    if c == 102:
        return _literal(s, b"false", 5)
    if c == 110:
        return _literal(s, b"null", 4)
    return _number(s)


cdef inline bint _key_is(Scan* s, const char* word, Py_ssize_t length) noexcept nogil:
    return (s.s_end - s.s_start == length
            and memcmp(s.p + s.s_start, word, length) == 0)


cdef object _str_value(Scan* s, bytes data):
    """The last scanned string as str (validated already)."""
    if not s.s_escaped:
        return PyUnicode_DecodeUTF8(<const char*>s.p + s.s_start, s.s_end - s.s_start, NULL)
    return orjson_loads(data[s.s_start - 1:s.s_end + 1])


cdef int _object_keys(Scan* s) noexcept nogil:
    """At '{': consume it; 1 if the object is empty (closed), 0 if a key follows, <0 error."""
    s.i += 1
    _ws(s)
    if s.i < s.n and s.p[s.i] == 125:
        s.i += 1
        return 1
    return 0


cdef int _next_key(Scan* s) noexcept nogil:
    """At a key's quote: scan key and colon. Escaped keys fall back (they could spell
    "content")."""
    cdef int r
    if s.i >= s.n or s.p[s.i] != 34:
        return -1
    r = _string(s)
    if r:
        return r
    if s.s_escaped:
        return SC_FALLBACK
    _ws(s)
    if s.i >= s.n or s.p[s.i] != 58:
        return -1
    s.i += 1
    _ws(s)
    return SC_OK


cdef int _after_member(Scan* s, unsigned char close) noexcept nogil:
    """After a value: 0 if another member follows, 1 if the container closed."""
    _ws(s)
    if s.i >= s.n:
        return -1
    if s.p[s.i] == 44:
        s.i += 1
        _ws(s)
        return 0
    if s.p[s.i] == close:
        s.i += 1
        return 1
    return -1


cdef class _Acc:
    cdef list content
    cdef list args
    cdef object finish
    cdef object c_content      # current choice
    cdef list c_args
    cdef object c_finish
    cdef object fn_args        # current tool call


cdef int _function(Scan* s, bytes data, _Acc acc) except -3:
    cdef int r = _object_keys(s)
    if r:
        return 0 if r == 1 else r
    while True:
        r = _next_key(s)
        if r:
            return r
        if _key_is(s, b"arguments", 9):
            acc.fn_args = None
            if s.i < s.n and s.p[s.i] == 34:
                r = _string(s)
                if r:
                    return r
                acc.fn_args = _str_value(s, data)
                r = 0
            else:
                r = _skip(s, 4)
        else:
            r = _skip(s, 4)
        if r:
            return r
        r = _after_member(s, 125)
        if r:
            return 0 if r == 1 else r


cdef int _tool_call(Scan* s, bytes data, _Acc acc) except -3:
    cdef int r = _object_keys(s)
    acc.fn_args = None
    if r:
        return 0 if r == 1 else r
    while True:
        r = _next_key(s)
        if r:
            return r
        if _key_is(s, b"function", 8):
            acc.fn_args = None
            if s.i < s.n and s.p[s.i] == 123:
                r = _function(s, data, acc)
            else:
                r = _skip(s, 3)
        else:
            r = _skip(s, 3)
        if r:
            return r
        r = _after_member(s, 125)
        if r:
            return 0 if r == 1 else r


cdef int _tool_calls(Scan* s, bytes data, _Acc acc) except -3:
    cdef int r
    acc.c_args = []
    s.i += 1
    _ws(s)
    if s.i < s.n and s.p[s.i] == 93:
        s.i += 1
        return 0
    while True:
        if s.i < s.n and s.p[s.i] == 123:
            r = _tool_call(s, data, acc)
            if r:
                return r
            if acc.fn_args is not None:
                acc.c_args.append(acc.fn_args)
        else:
            r = _skip(s, 3)
            if r:
                return r
        r = _after_member(s, 93)
        if r:
            return 0 if r == 1 else r


cdef int _delta(Scan* s, bytes data, _Acc acc) except -3:
    cdef int r = _object_keys(s)
    if r:
        return 0 if r == 1 else r
    while True:
        r = _next_key(s)
        if r:
            return r
        if _key_is(s, b"content", 7):
            acc.c_content = None
            if s.i < s.n and s.p[s.i] == 34:
                r = _string(s)
                if r:
                    return r
                acc.c_content = _str_value(s, data)
            else:
                r = _skip(s, 3)
        elif _key_is(s, b"tool_calls", 10):
            acc.c_args = None
            if s.i < s.n and s.p[s.i] == 91:
                r = _tool_calls(s, data, acc)
            else:
                r = _skip(s, 3)
        else:
            r = _skip(s, 3)
        if r:
            return r
        r = _after_member(s, 125)
        if r:
            return 0 if r == 1 else r


cdef int _choice(Scan* s, bytes data, _Acc acc) except -3:
    cdef int r = _object_keys(s)
    acc.c_content = None
    acc.c_args = None
    acc.c_finish = None
    if r:
        return 0 if r == 1 else r
    while True:
        r = _next_key(s)
        if r:
            return r
        if _key_is(s, b"delta", 5):
            acc.c_content = None
            acc.c_args = None
            if s.i < s.n and s.p[s.i] == 123:
                r = _delta(s, data, acc)
            else:
                r = _skip(s, 2)
        elif _key_is(s, b"finish_reason", 13):
            acc.c_finish = None
            if s.i < s.n and s.p[s.i] == 34:
                r = _string(s)
                if r:
                    return r
                if s.s_end > s.s_start:
                    acc.c_finish = _str_value(s, data)
            else:
                r = _skip(s, 2)
        else:
            r = _skip(s, 2)
        if r:
            return r
        r = _after_member(s, 125)
        if r:
            return 0 if r == 1 else r


cdef int _choices(Scan* s, bytes data, _Acc acc) except -3:
    cdef int r
    acc.content = None
    acc.args = None
    acc.finish = None
    s.i += 1
    _ws(s)
    if s.i < s.n and s.p[s.i] == 93:
        s.i += 1
        return 0
    while True:
        if s.i < s.n and s.p[s.i] == 123:
            r = _choice(s, data, acc)
            if r:
                return r
            if acc.c_content is not None:
                if acc.content is None:
                    acc.content = [acc.c_content]
                else:
                    acc.content.append(acc.c_content)
            if acc.c_args:
                if acc.args is None:
                    acc.args = list(acc.c_args)
                else:
                    acc.args.extend(acc.c_args)
            if acc.c_finish is not None and acc.c_finish:
                acc.finish = acc.c_finish
        else:
            r = _skip(s, 1)
            if r:
                return r
        r = _after_member(s, 93)
        if r:
            return 0 if r == 1 else r


cdef inline str _joined(list parts):
    if parts is None:
        return ""
    if len(parts) == 1:
        return parts[0]
    return "".join(parts)


def extract_chunk(data):
    cdef bytes b = data if type(data) is bytes else bytes(data)
    cdef Scan s
    cdef _Acc acc = _Acc()
    cdef int r
    cdef bint has_error = False, has_choices = False
    cdef Py_ssize_t u_start = -1, u_end = -1
    s.p = <const unsigned char*>PyBytes_AS_STRING(b)
    s.n = PyBytes_GET_SIZE(b)
    s.i = 0
    acc.content = None
    acc.args = None
    acc.finish = None
    _ws(&s)
    if s.i >= s.n or s.p[s.i] != 123:
        return _py.extract_chunk(b)
    r = _object_keys(&s)
    if r == 0:
        while True:
            r = _next_key(&s)
            if r:
                break
            if _key_is(&s, b"choices", 7):
                has_choices = True
                if s.i < s.n and s.p[s.i] == 91:
                    r = _choices(&s, b, acc)
                else:
                    acc.content = None
                    acc.args = None
                    acc.finish = None
                    r = _skip(&s, 1)
            elif _key_is(&s, b"usage", 5):
                u_start = s.i
                r = _skip(&s, 1)
                u_end = s.i
            else:
                if _key_is(&s, b"error", 5):
                    has_error = True
                r = _skip(&s, 1)
            if r:
                break
            r = _after_member(&s, 125)
            if r:
                r = 0 if r == 1 else r
                break
    elif r == 1:
        r = 0
    if r == 0:
        _ws(&s)
        if s.i != s.n:
            r = -1
    if r:
        return _py.extract_chunk(b)
    usage = None
    if u_start >= 0 and s.p[u_start] == 123:
        usage = orjson_loads(b[u_start:u_end])
        if not usage:
            usage = None
    return (_joined(acc.content), _joined(acc.args), acc.finish, usage,
            has_error and not has_choices)


# Cache keys: the same canonical form as the twin (whose docstring is the contract); the
# walk that rewrites integral floats is typed here, orjson serializes, blake2b hashes.

CACHE_EXCLUDED = _py.CACHE_EXCLUDED
cdef frozenset _EXCLUDED = _py.CACHE_EXCLUDED
cdef bytes _CACHE_PREFIX = _py._CACHE_PREFIX
cdef int _DUMPS_OPTS = _py._DUMPS_OPTS
cdef double _EXACT_INT = _py._EXACT_INT
_blake2b = hashlib.blake2b
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError


cdef object _canon(object value):
    cdef object t = type(value)
    cdef double d
    cdef dict out_d
    cdef list out_l
    cdef Py_ssize_t i, n
    if t is float:
        d = value
        if d == floor(d) and -_EXACT_INT <= d <= _EXACT_INT:
            return int(value)
        return value
    if t is dict:
        out_d = None
        for k, v in (<dict>value).items():
            c = _canon(v)
            if c is not v:
                if out_d is None:
                    out_d = dict(<dict>value)
                out_d[k] = c
        return value if out_d is None else out_d
    if t is list or t is tuple:
        out_l = None
        n = len(value)
        for i in range(n):
            v = value[i]
            c = _canon(v)
            if c is not v:
                if out_l is None:
                    out_l = list(value)
                out_l[i] = c
        return value if out_l is None else out_l
    return value


cdef inline bint _single_text_part(object content):
    if not (type(content) is list and len(<list>content) == 1 and type((<list>content)[0]) is dict):
        return False
    part = <dict>((<list>content)[0])
    return len(part) == 2 and part.get("type") == "text" and type(part.get("text")) is str


cdef object _canon_message(object msg):
    if type(msg) is not dict:
        return _canon(msg)
    cdef dict m = <dict>msg
    content = m.get("content")
    cdef bint single = _single_text_part(content)
    if not (single or type(m.get("tool_calls")) is list
            or ("name" in m and m["name"] is None)
            or ("tool_call_id" in m and m["tool_call_id"] is None)):
        return _canon(msg)
    cdef dict out = dict(m)
    if single:
        out["content"] = (<dict>((<list>content)[0]))["text"]
    calls = out.get("tool_calls")
    if type(calls) is list:
        new_calls = []
        for call in <list>calls:
            if type(call) is dict and type((<dict>call).get("function")) is dict:
                fn = (<dict>call)["function"]
                args = fn.get("arguments")
                if type(args) is str:
                    try:
                        parsed = orjson_loads(args)
                    except _JSONDecodeError:
                        pass
                    else:
                        fn = dict(fn)
                        fn["arguments"] = {"$json": _canon(parsed)}
                        call = dict(<dict>call)
                        call["function"] = fn
            new_calls.append(call)
        out["tool_calls"] = new_calls
    for k in ("name", "tool_call_id"):
        if out.get(k) is None:
            out.pop(k, None)
    return _canon(out)


cdef dict _canonical_body(dict body):
    cdef dict out = {}
    for k, v in body.items():
        if v is None or k in _EXCLUDED:
            continue
        if k == "max_completion_tokens":
            k = "max_tokens"
        elif k == "max_tokens" and body.get("max_completion_tokens") is not None:
            continue
        if k == "messages" and type(v) is list:
            out[k] = [_canon_message(m) for m in <list>v]
        else:
            out[k] = _canon(v)
    return out


def cache_key(dict body, route, scope=""):
    cdef bytes canon = _dumps(_canonical_body(body), option=_DUMPS_OPTS)
    return _blake2b(_CACHE_PREFIX + <bytes>_dumps([route, scope]) + b"\x00" + canon,
                    digest_size=16).digest()


def cache_key_hex(dict body, route, scope=""):
    return cache_key(body, route, scope).hex()


# Weighted selection: cumulative sums in a C array, binary search (bench_fast: pick).

cdef class _Weights:
    cdef double* cum
    cdef double* ws
    cdef Py_ssize_t n
    cdef double total
    cdef Py_ssize_t last
    cdef tuple wtuple

    def __dealloc__(self):
        PyMem_Free(self.cum)
        PyMem_Free(self.ws)


cdef _Weights _build_weights(weights):
    cdef list wl = [float(w) for w in weights]
    cdef _Weights st = _Weights.__new__(_Weights)
    cdef Py_ssize_t i, n = len(wl)
    cdef double w, total = 0.0
    st.n = n
    st.last = -1
    st.cum = <double*>PyMem_Malloc((n + 1) * sizeof(double))
    st.ws = <double*>PyMem_Malloc((n + 1) * sizeof(double))
    if st.cum == NULL or st.ws == NULL:
        raise MemoryError()
    for i in range(n):
        w = wl[i]
        if not (0.0 <= w < INFINITY):
            raise ValueError(f"weight {i} is {w!r}: weights must be finite and >= 0")
        total += w
        st.cum[i] = total
        st.ws[i] = w
        if w > 0.0:
            st.last = i
    st.total = total
    st.wtuple = tuple(wl)
    return st


@cython.final
cdef class WeightedPicker:
    cdef _Weights _state

    def __init__(self, weights):
        self._state = _build_weights(weights)

    def replace(self, weights):
        self._state = _build_weights(weights)

    @property
    def weights(self):
        return self._state.wtuple

    @property
    def total(self):
        return self._state.total

    def __len__(self):
        return self._state.n

    @cython.always_allow_keywords(False)
    def pick(self, object u):
        # METH_O entry point: the call overhead is most of a pick (bench_fast: pick)
        cdef _Weights st = self._state
        cdef double target
        cdef Py_ssize_t lo = 0, hi, mid
        if st.last < 0:
            return -1
        target = <double>u * st.total
        hi = st.n
        while lo < hi:  # bisect_right: first index with cum > target
            mid = (lo + hi) >> 1
            if target < st.cum[mid]:
                hi = mid
            else:
                lo = mid + 1
        return lo if lo <= st.last else st.last

    def pick_excluding(self, double u, excluded):
        cdef _Weights st = self._state
        cdef double remaining = 0.0, target, acc = 0.0, w
        cdef Py_ssize_t i, chosen = -1
        cdef object ex = excluded
        for i in range(st.n):
            if i not in ex:
                remaining += st.ws[i]
        if remaining <= 0.0:
            return -1
        target = u * remaining
        for i in range(st.n):
            w = st.ws[i]
            if w > 0.0 and i not in ex:
                acc += w
                chosen = i
                if acc > target:
                    return i
        return chosen

    def choose(self, rng):
        return self.pick(rng.random())


# Latency windows: same bins and ring as the twin, in C arrays (bench_fast: latency).

cdef enum:
    LW_SUB = 16
    LW_EMIN = -3
    LW_EMAX = 25
    LW_BINS = (LW_EMAX - LW_EMIN) * LW_SUB + 2


cdef inline int _lat_bin(double value) noexcept nogil:
    cdef int e
    cdef double m
    if not value > 0.0:
        return 0
    m = frexp(value, &e)
    if e < LW_EMIN:
        return 0
    if e >= LW_EMAX:
        return LW_BINS - 1
    return (e - LW_EMIN) * LW_SUB + <int>((m - 0.5) * (2 * LW_SUB)) + 1


cdef inline double _lat_value(int b) noexcept nogil:
    cdef int e, s
    if b <= 0:
        return ldexp(0.5, LW_EMIN)
    if b >= LW_BINS - 1:
        return ldexp(0.5, LW_EMAX)
    e = (b - 1) // LW_SUB
    s = (b - 1) % LW_SUB
    return ldexp(0.5 + (s + 0.5) / (2 * LW_SUB), e + LW_EMIN)


def latency_bin(double value):
    return _lat_bin(value)


def latency_bin_value(int b):
    return _lat_value(b)


cdef class LatencyWindow:
    cdef readonly double window_s
    cdef readonly int slices
    cdef double _slice_s
    cdef unsigned int* _hist
    cdef long long* _ok
    cdef long long* _err
    cdef long long _total[LW_BINS]
    cdef long long _n_ok, _n_err
    cdef long long _head
    cdef bint _started

    def __cinit__(self, double window_s=60.0, int slices=12):
        if not window_s > 0 or slices < 1:
            raise ValueError("window_s must be > 0 and slices >= 1")
        self.window_s = window_s
        self.slices = slices
        self._slice_s = window_s / slices
        self._hist = <unsigned int*>PyMem_Calloc(<size_t>slices * LW_BINS, sizeof(unsigned int))
        self._ok = <long long*>PyMem_Calloc(slices, sizeof(long long))
        self._err = <long long*>PyMem_Calloc(slices, sizeof(long long))
        if self._hist == NULL or self._ok == NULL or self._err == NULL:
            raise MemoryError()
        memset(self._total, 0, sizeof(self._total))
        self._started = False

    def __dealloc__(self):
        PyMem_Free(self._hist)
        PyMem_Free(self._ok)
        PyMem_Free(self._err)

    cdef inline int _advance(self, double now) noexcept:
        cdef long long sid = <long long>floor(now / self._slice_s)
        cdef long long steps, k, idx
        if not self._started:
            self._started = True
            self._head = sid
            return <int>_pymod(sid, self.slices)
        if sid <= self._head:
            return <int>_pymod(self._head, self.slices)
        steps = sid - self._head
        if steps > self.slices:
            steps = self.slices
        for k in range(1, steps + 1):
            self._expire(<int>_pymod(self._head + k, self.slices))
        self._head = sid
        return <int>_pymod(sid, self.slices)

    cdef inline void _expire(self, int idx) noexcept:
        cdef unsigned int* h = self._hist + <Py_ssize_t>idx * LW_BINS
        cdef int b
        for b in range(LW_BINS):
            if h[b]:
                self._total[b] -= h[b]
                h[b] = 0
        self._n_ok -= self._ok[idx]
        self._n_err -= self._err[idx]
        self._ok[idx] = 0
        self._err[idx] = 0

    cpdef void observe(self, double latency_ms, bint ok, double now):
        cdef int idx = self._advance(now)
        cdef int b = _lat_bin(latency_ms)
        self._hist[<Py_ssize_t>idx * LW_BINS + b] += 1
        self._total[b] += 1
        if ok:
            self._ok[idx] += 1
            self._n_ok += 1
        else:
            self._err[idx] += 1
            self._n_err += 1

    def count(self, double now):
        self._advance(now)
        return self._n_ok + self._n_err

    def error_rate(self, double now):
        self._advance(now)
        cdef long long n = self._n_ok + self._n_err
        return self._n_err / <double>n if n else None

    cpdef object quantile(self, double q, double now):
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q!r} is not in [0, 1]")
        self._advance(now)
        cdef long long n = self._n_ok + self._n_err
        cdef long long rank, acc = 0
        cdef int b
        if not n:
            return None
        rank = <long long>ceil(q * n)
        if rank < 1:
            rank = 1
        for b in range(LW_BINS):
            acc += self._total[b]
            if acc >= rank:
                return _lat_value(b)
        return _lat_value(LW_BINS - 1)

    def p50(self, double now):
        return self.quantile(0.50, now)

    def p95(self, double now):
        return self.quantile(0.95, now)

    def p99(self, double now):
        return self.quantile(0.99, now)


cdef inline long long _pymod(long long a, long long m) noexcept nogil:
    cdef long long r = a % m
    return r + m if r < 0 else r
