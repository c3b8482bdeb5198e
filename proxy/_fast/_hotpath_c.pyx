# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Hot-path kernels, compiled. Same names and behaviour as `_hotpath_py.py`, whose
docstrings are the contract; tests run both and property tests check that they agree."""

from libc.string cimport memchr

__all__ = ["SSEEvent", "SSEParser", "encode_sse"]


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


cdef class SSEParser:
    cdef bytearray _buf
    cdef Py_ssize_t _scan
    cdef bint _skip_lf
    cdef list _data
    cdef object _event
    cdef object _last_id
    cdef object _retry

    def __init__(self):
        self._buf = bytearray()
        self._scan = 0
        self._skip_lf = False
        self._data = None
        self._event = None
        self._last_id = None
        self._retry = None

    def feed(self, chunk):
        cdef list events = []
        cdef const unsigned char[:] view
        cdef const unsigned char* p
        cdef Py_ssize_t n, start, i
        cdef unsigned char c
        if not chunk:
            return events
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 10:
                chunk = chunk[1:]
                if not chunk:
                    return events
        buf = self._buf
        buf += chunk
        n = len(buf)
        if n == 0:
            return events
        view = buf
        p = &view[0]
        start = 0
        i = self._scan
        while i < n:
            c = p[i]
            if c == 10 or c == 13:
                self._line(bytes(p[start:i]), events)
                if c == 13:
                    if i + 1 < n:
                        if p[i + 1] == 10:
                            i += 1
                    else:
                        self._skip_lf = True
                start = i + 1
            i += 1
        view = None
        if start:
            del buf[:start]
        self._scan = len(buf)
        return events

    def close(self):
        self._buf = bytearray()
        self._scan = 0
        self._data = None
        self._event = None
        self._retry = None
        return []

    cdef _line(self, bytes line, list events):
        cdef Py_ssize_t colon, n = len(line)
        cdef bytes field, value
        if n >= 5 and line[:5] == b"data:":
            value = line[6:] if (n > 5 and line[5] == 32) else line[5:]
            if self._data is None:
                self._data = [value]
            else:
                self._data.append(value)
            return
        if n == 0:
            if self._data is not None:
                data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
                events.append(SSEEvent(self._event, data, self._last_id, self._retry))
            self._data = None
            self._event = None
            self._retry = None
            return
        if line[0] == 58:
            return
        colon = line.find(b":")
        if colon < 0:
            field = line
            value = b""
        else:
            field = line[:colon]
            value = line[colon + 2:] if (colon + 1 < n and line[colon + 1] == 32) else line[colon + 1:]
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


def encode_sse(bytes data, event=None):
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        body = b"".join([b"data: " + line + b"\n" for line in lines])
    else:
        body = b"data: " + data + b"\n"
    if event is not None:
        return b"event: " + event.encode() + b"\n" + body + b"\n"
    return body + b"\n"
