"""An HTTPS client for the benches: requests one at a time on a connection kept alive (made again
when the server closes it), h11 for the framing, the gateway's self-signed certificate taken as is.

    client = WebClient(8443, source="127.0.0.2")
    status, body = await client.request("GET", "/login")
    await client.close()
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlencode

import h11


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the gateway's own self-signed certificate, on loopback
    return context


TLS = _insecure()


class WebClient:
    def __init__(self, port: int, source: str = "127.0.0.1", tls: bool = True) -> None:
        self.port = port
        self.source = source
        self.tls = tls
        self.connections = 0  # made, over the client's life
        self.received = 0  # bytes of HTTP (heads and bodies) received, over the client's life
        self.headers: dict[str, str] = {}  # of the last answer, names in lower case
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._parser: h11.Connection | None = None

    async def request(
        self, method: str, target: str, form: dict[str, str] | None = None, headers: tuple[tuple[str, str], ...] = ()
    ) -> tuple[int, bytes]:
        """Status and body of one request; raises OSError (or h11's errors) when the connection
        fails, and the next request makes a new one."""
        if self._stream is None or self._parser is None or self._parser.our_state is not h11.IDLE:
            await self.close()
            self._stream = await asyncio.open_connection(
                "127.0.0.1", self.port, ssl=TLS if self.tls else None, local_addr=(self.source, 0)
            )
            self._parser = h11.Connection(h11.CLIENT)
            self.connections += 1
        reader, writer = self._stream
        parser = self._parser
        body = urlencode(form).encode() if form is not None else b""
        fields = [("host", f"127.0.0.1:{self.port}"), *headers]
        if form is not None:
            fields += [("content-type", "application/x-www-form-urlencoded"), ("content-length", str(len(body)))]
        try:
            writer.write(parser.send(h11.Request(method=method, target=target, headers=fields)))
            if body:
                writer.write(parser.send(h11.Data(data=body)))
            writer.write(parser.send(h11.EndOfMessage()))
            status, received = 0, bytearray()
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    self.received += len(data)
                    parser.receive_data(data)
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    self.headers = {name.decode(): value.decode("latin-1") for name, value in event.headers}
                elif isinstance(event, h11.Data):
                    received += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise ConnectionResetError("closed before the answer ended")
            if parser.our_state is h11.DONE and parser.their_state is h11.DONE:
                parser.start_next_cycle()
            return status, bytes(received)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
        self._stream = self._parser = None
