"""The floor under every gateway: a TCP relay on uvloop that forwards bytes and nothing else.

No HTTP at all: each client connection gets its own connection to the upstream, and bytes go
across both ways as they arrive (with flow control: a side whose peer cannot take more is
paused). Whatever sits between a client and a provider pays at least this: two more socket
hops, and a process to wake on another core. Run in the suite as the peer `relay`, at the
same open-loop rate as Faregate, it says how much of Faregate's added latency is the
machine's (on the 2-core VM, full suite runs at 2,400–3,000 requests/s: 0.16–0.17 ms at
p50 and under 0.6 ms at p99, where bare aiohttp added 0.59–1.13 ms at p50).

    python -m bench.relay --port 8100 --upstream http://127.0.0.1:8200/v1
"""
from __future__ import annotations

import argparse
import asyncio
from urllib.parse import urlsplit

__all__ = ["serve", "main"]


class _Side(asyncio.Protocol):
    """One end of a relayed connection; `other` is the end its bytes go to."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.pending: list[bytes] = []   # bytes that arrived before the other end existed
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            self.pending.append(data)
        else:
            other.transport.write(data)

    def eof_received(self):
        if self.other is not None and self.other.transport is not None and \
                self.other.transport.can_write_eof():
            self.other.transport.write_eof()
            return True   # keep our side open for what the other end still sends
        return None

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.other is not None and self.other.transport is not None:
            self.other.transport.close()

    # flow control: when our transport's buffer is full, stop reading the other end
    def pause_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other is not None and self.other.transport is not None:
            self.other.transport.resume_reading()

    def attach(self, other: _Side) -> None:
        """Joins the two ends and sends what waited."""
        self.other, other.other = other, self
        for side in (self, other):
            if side.pending and side.other.transport is not None:
                side.other.transport.writelines(side.pending)
            side.pending.clear()


class _Client(_Side):
    """The end a client connected to; it opens its upstream connection."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host, self.port = host, port

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, up = await asyncio.get_running_loop().create_connection(_Side, self.host, self.port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        if self.closed:
            up.transport.close()
            return
        self.attach(up)


async def serve(port: int, upstream: str, host: str = "127.0.0.1") -> asyncio.AbstractServer:
    """Starts the relay; `upstream` is a URL whose host and port are used (the path and scheme
    pass through untouched: the client's requests already name them)."""
    u = urlsplit(upstream)
    up_host, up_port = u.hostname or "127.0.0.1", u.port or (443 if u.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Client(up_host, up_port), host, port)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.relay", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="the provider's base URL, e.g. http://127.0.0.1:8200/v1")
    args = ap.parse_args(argv)
    import uvloop

    async def run() -> None:
        server = await serve(args.port, args.upstream)
        async with server:
            await server.serve_forever()

    try:
        uvloop.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
