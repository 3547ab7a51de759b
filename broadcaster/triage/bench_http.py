"""The inbound benchmark's webhook sender: plain HTTP/1.1 over keep-alive connections, each
request encoded once before the clock starts.

Why not aiohttp's client, as everywhere else: the load generator shares the machine with the
service it measures (two cores), and aiohttp's client spent about 200 us of CPU per call, a
third of what the service itself spent, taken from the service. Sending bytes encoded in
advance and reading the status line, the headers and the body costs a fraction of that. The
service sees exactly the requests a platform sends: the same method, path, headers, signature
and body, over real TCP; every answer is read in full before the connection is used again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

__all__ = ["KeepAliveConnection", "encode_post"]


def encode_post(host: str, path: str, headers: Mapping[str, str], body: bytes) -> bytes:
    """A complete HTTP/1.1 POST request, ready to write."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class KeepAliveConnection:
    """One connection, one request at a time; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """Send `request`, read its whole answer; the answer's status code. Connection
        failures raise OSError or asyncio.IncompleteReadError (the connection is dropped)."""
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        try:
            writer.write(request)
            status, keep_alive = await _read_answer(reader)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status and whether the connection stays open, once the body has been read."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head[:-4].split(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    keep_alive = True
    for line in header_lines:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = value.strip().lower() != b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # the answers here carry no trailers
                break
            await reader.readexactly(size + 2)
    elif length is not None:
        await reader.readexactly(length)
    else:  # no length: the body runs until the server closes the connection
        await reader.read()
        keep_alive = False
    return status, keep_alive
