# Included by _hotpath_c.pyx (one compiled module, split by kernel); the names it uses
# are imported there. The contract is the twin in _hotpath_py.py.

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
