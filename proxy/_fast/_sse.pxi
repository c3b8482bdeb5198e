# Included by _hotpath_c.pyx (one compiled module, split by kernel); the names it uses
# are imported there. The contract is the twin in _hotpath_py.py.

# SSE: the incremental parser and framing (bench_fast: sse_parse).

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
