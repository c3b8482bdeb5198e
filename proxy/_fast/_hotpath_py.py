"""Hot-path kernels, pure Python: the reference implementation.

`_hotpath_c.pyx` has the same names and behaviour, compiled. The docstrings here are the
contract for both; tests run every function against both and property tests check that
they agree on generated input.
"""
from __future__ import annotations

__all__ = ["SSEEvent", "SSEParser", "encode_sse"]


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
