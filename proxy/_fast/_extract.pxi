# Included by _hotpath_c.pyx (one compiled module, split by kernel); the names it uses
# are imported there. The contract is the twin in _hotpath_py.py.

# extract_chunk: a validating scanner over the JSON bytes that builds only the strings it
# returns (bench_fast: extract_chunk). Whatever it is not sure about (escaped keys, \u
# surrogates, exponents, long numbers, deep nesting, non-object payloads, invalid JSON)
# goes to the reference, so the result is always the reference's.

cdef enum:
    SC_OK = 0
    SC_FALLBACK = -2
    SC_MAX_DEPTH = 64
    SC_MAX_DELTA_KEYS = 16   # a delta's keys are checked for duplicates; more fall back

SHAPE_OTHER = 0
SHAPE_CHOICES = 1
SHAPE_SIMPLE = 2


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
    # shape (see the twin's _shape): of the last `choices` list, and of its current choice
    cdef Py_ssize_t ch_items   # elements of the list
    cdef Py_ssize_t ch_objects # of which objects
    cdef bint ch_simple        # its first object qualifies for SHAPE_SIMPLE
    cdef bint c_index_zero     # the current choice's `index` is absent or the integer 0
    cdef bint c_delta_plain    # its `delta` is absent, null, or holds only content
    cdef bint d_plain          # the delta being scanned holds only content so far


cdef inline bint _is_null(Scan* s) noexcept nogil:
    return s.i + 4 <= s.n and memcmp(s.p + s.i, b"null", 4) == 0


cdef inline bint _is_int_zero(Scan* s) noexcept nogil:
    """At a number: it is 0 or -0, not 0.0 (which is a float to the reference)."""
    cdef Py_ssize_t i = s.i
    if i < s.n and s.p[i] == 45:
        i += 1
    if i >= s.n or s.p[i] != 48:
        return False
    i += 1
    return not (i < s.n and (s.p[i] == 46 or s.p[i] == 101 or s.p[i] == 69
                             or 48 <= s.p[i] <= 57))


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
    # Plainness is decided per member, so a duplicate key (where the reference keeps the
    # last value) falls back; keys are remembered by their spans for that check.
    cdef Py_ssize_t key_start[SC_MAX_DELTA_KEYS]
    cdef Py_ssize_t key_len[SC_MAX_DELTA_KEYS]
    cdef int n_keys = 0, k
    cdef int r = _object_keys(s)
    acc.d_plain = True
    if r:
        return 0 if r == 1 else r
    while True:
        r = _next_key(s)
        if r:
            return r
        if n_keys == SC_MAX_DELTA_KEYS:
            return SC_FALLBACK
        for k in range(n_keys):
            if (key_len[k] == s.s_end - s.s_start
                    and memcmp(s.p + key_start[k], s.p + s.s_start, key_len[k]) == 0):
                return SC_FALLBACK
        key_start[n_keys] = s.s_start
        key_len[n_keys] = s.s_end - s.s_start
        n_keys += 1
        if _key_is(s, b"content", 7):
            acc.c_content = None
            if s.i < s.n and s.p[s.i] == 34:
                r = _string(s)
                if r:
                    return r
                acc.c_content = _str_value(s, data)
            else:
                if not _is_null(s):
                    acc.d_plain = False
                r = _skip(s, 3)
        elif _key_is(s, b"tool_calls", 10):
            acc.c_args = None
            if not _is_null(s):
                acc.d_plain = False
            if s.i < s.n and s.p[s.i] == 91:
                r = _tool_calls(s, data, acc)
            else:
                r = _skip(s, 3)
        elif _key_is(s, b"role", 4):
            if s.i < s.n and s.p[s.i] == 34:
                r = _string(s)
                if r:
                    return r
                if s.s_escaped:
                    if _str_value(s, data) != "assistant":
                        acc.d_plain = False
                elif not (s.s_end - s.s_start == 9 and memcmp(s.p + s.s_start, b"assistant", 9) == 0):
                    acc.d_plain = False
            else:
                if not _is_null(s):
                    acc.d_plain = False
                r = _skip(s, 3)
        else:
            if not _is_null(s):
                acc.d_plain = False
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
    acc.c_index_zero = True
    acc.c_delta_plain = True
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
                acc.c_delta_plain = acc.d_plain
            else:
                acc.c_delta_plain = _is_null(s)
                r = _skip(s, 2)
        elif _key_is(s, b"index", 5):
            acc.c_index_zero = _is_int_zero(s)
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
    acc.ch_items = 0
    acc.ch_objects = 0
    acc.ch_simple = False
    s.i += 1
    _ws(s)
    if s.i < s.n and s.p[s.i] == 93:
        s.i += 1
        return 0
    while True:
        acc.ch_items += 1
        if s.i < s.n and s.p[s.i] == 123:
            r = _choice(s, data, acc)
            if r:
                return r
            acc.ch_objects += 1
            if acc.ch_objects == 1:
                acc.ch_simple = acc.c_index_zero and acc.c_delta_plain
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
    cdef bint has_error = False, has_choices = False, has_groq = False
    cdef Py_ssize_t u_start = -1, u_end = -1
    s.p = <const unsigned char*>PyBytes_AS_STRING(b)
    s.n = PyBytes_GET_SIZE(b)
    s.i = 0
    acc.content = None
    acc.args = None
    acc.finish = None
    acc.ch_items = 0
    acc.ch_objects = 0
    acc.ch_simple = False
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
                    acc.ch_items = 0
                    acc.ch_objects = 0
                    acc.ch_simple = False
                    r = _skip(&s, 1)
            elif _key_is(&s, b"usage", 5):
                u_start = s.i
                r = _skip(&s, 1)
                u_end = s.i
            else:
                if _key_is(&s, b"error", 5):
                    has_error = True
                elif _key_is(&s, b"x_groq", 6):
                    has_groq = True
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
    if has_error or has_groq or acc.ch_objects == 0:
        shape = SHAPE_OTHER
    elif acc.ch_items == 1 and acc.ch_simple:
        shape = SHAPE_SIMPLE
    else:
        shape = SHAPE_CHOICES
    return (_joined(acc.content), _joined(acc.args), acc.finish, usage,
            has_error and not has_choices, shape)
