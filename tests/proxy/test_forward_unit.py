"""Pieces of the forwarding path that decide whose fault a failure is."""
import aiohttp
import pytest

from proxy.forward import ClientDisconnected, _send
from proxy.upstream import STREAM_ERRORS, TRANSPORT_ERRORS


class _GoneClient:
    """A response whose client connection is gone, as aiohttp reports it on write."""

    async def write(self, data):
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    async def write_eof(self, data=b""):
        raise ConnectionResetError("gone")

    async def prepare(self, request):
        raise ConnectionResetError("gone")


@pytest.mark.parametrize("call", [
    lambda r: _send(r, b"data: x\n\n"),
    lambda r: _send(r, b"", eof=True),
    lambda r: _send(r, b"data: [DONE]\n\n", eof=True),
    lambda r: _send(r, None, object()),
])
async def test_a_client_write_failure_is_never_an_upstream_error(call):
    resp = _GoneClient()
    with pytest.raises(ClientDisconnected) as exc:
        await call(resp)
    # the failover loop catches these as the provider's failures; a client leaving must not be
    assert not isinstance(exc.value, TRANSPORT_ERRORS + STREAM_ERRORS)
    assert exc.value.response is resp
