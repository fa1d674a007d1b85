"""An RS-485 port opened for a protocol: what the meters' bus and the upstream port share.

Both ports are opened the same way (pyserial-asyncio, the operating system's reason when that
fails), switch the RS-485 driver's direction the same way (the UART's RS-485 mode, or RTS raised
around each frame), drop the echo a transceiver that hears itself returns, and are opened again
with back-off when they vanish (a USB adapter unplugged), logged once per outage:

    transport = await open_serial(settings, protocol)            # PortUnavailable(reason)
    set_direction(transport, settings)
    ends = transmit(transport, settings, frame)                  # when its last bit leaves the wire

A protocol that only listens and answers derives from `SerialProtocol` and lets `serve_port` keep
its port open (the bus, which queues requests of its own, uses `Reopening` directly):

    await serve_port("upstream", settings, lambda: RtuSlave(...))   # until cancelled
"""

from __future__ import annotations

import asyncio
import os
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import serial
import serial_asyncio
import structlog
from serial.rs485 import RS485Settings

from gateway.errors import GatewayError

PARITIES = ("N", "E", "O")
STOPBITS = (1, 2)
RS485_MODES = ("none", "kernel", "rts")  # the adapter switches; the UART's RS-485 mode; we drive RTS
REOPEN_START = 1.0  # seconds before opening a failed or missing port again, doubling
REOPEN_MAX = 30.0
ECHO_GRACE = 0.05  # seconds after a frame's end within which its echo must be back, or it never comes


def driver_keys(section: Any) -> dict[str, Any]:
    """How a configuration section ([serial], [upstream]) drives its RS-485 port, as `PortSettings`
    takes it: the direction mode, the RTS delays (milliseconds there, seconds here) and the echo."""
    return {
        "rs485": section.rs485,
        "rts_delay_before": section.rts_delay_before / 1000,
        "rts_delay_after": section.rts_delay_after / 1000,
        "echo": section.echo,
    }


class PortUnavailable(GatewayError):
    """The port cannot be opened, cannot switch direction as asked, or failed; the message says why."""


class EchoMismatch(GatewayError):
    """What came back while our own frame's echo was due is not that frame."""


@dataclass(frozen=True, slots=True)
class PortSettings:
    """How to open an RS-485 port; `section` is the configuration section it came from, for messages."""

    port: str
    baudrate: int = 19200
    parity: str = "N"
    stopbits: int = 1
    rs485: str = "none"  # who switches the driver's direction: see RS485_MODES
    rts_delay_before: float = 0.0  # seconds RTS is raised before a frame ("kernel", "rts")
    rts_delay_after: float = 0.0  # and kept after its last bit
    echo: bool = False  # the receiver hears our own transmission first
    section: str = "serial"

    def __post_init__(self) -> None:
        if self.baudrate <= 0:
            raise ValueError(f"baudrate must be positive, not {self.baudrate}")
        if self.parity not in PARITIES:
            raise ValueError(f"parity must be one of {PARITIES}, not {self.parity!r}")
        if self.stopbits not in STOPBITS:
            raise ValueError(f"stopbits must be one of {STOPBITS}, not {self.stopbits}")
        if self.rs485 not in RS485_MODES:
            raise ValueError(f"rs485 must be one of {RS485_MODES}, not {self.rs485!r}")
        if self.rts_delay_before < 0 or self.rts_delay_after < 0:
            raise ValueError("RTS delays must not be negative")

    @property
    def bits_per_char(self) -> int:
        """Bits one byte takes on the wire: start, 8 data, parity if any, stop bits."""
        return 1 + 8 + (self.parity != "N") + self.stopbits

    def wire_time(self, nbytes: int) -> float:
        """Seconds that `nbytes` bytes take on the wire at this baud rate."""
        return nbytes * self.bits_per_char / self.baudrate


async def open_serial(settings: PortSettings, protocol: asyncio.Protocol) -> serial_asyncio.SerialTransport:
    """Open the port on the running loop for `protocol`.

    Raises PortUnavailable with the operating system's reason. The protocol's connection_made
    follows on the loop's next turn.
    """
    try:
        transport, _ = await serial_asyncio.create_serial_connection(
            asyncio.get_running_loop(),
            lambda: protocol,
            settings.port,
            baudrate=settings.baudrate,
            parity=settings.parity,
            stopbits=settings.stopbits,
            bytesize=8,
        )
    except (serial.SerialException, OSError) as exc:
        raise PortUnavailable(f"cannot open {settings.port}: {_reason(exc)}") from exc
    except termios.error as exc:  # a port that refuses these line settings (a pty any parity)
        raise PortUnavailable(
            f"cannot open {settings.port} at {settings.baudrate} baud, "
            f"8{settings.parity}{settings.stopbits}: {exc.args[-1]}"
        ) from exc
    return transport


def set_direction(transport: serial_asyncio.SerialTransport, settings: PortSettings) -> None:
    """Set up how the RS-485 driver switches direction (PortSettings.rs485).

    Closes the port and raises PortUnavailable if it cannot (a plain serial port has no RS-485
    mode, a pty not even RTS).
    """
    port = transport.serial
    try:
        if settings.rs485 == "kernel":
            port.rs485_mode = RS485Settings(
                rts_level_for_tx=True,
                rts_level_for_rx=False,
                delay_before_tx=settings.rts_delay_before,
                delay_before_rx=settings.rts_delay_after,
            )
        elif settings.rs485 == "rts":
            port.rts = False  # listening
    except (ValueError, OSError, serial.SerialException) as exc:
        transport.abort()
        raise PortUnavailable(
            f"cannot switch the RS-485 direction of {settings.port} "
            f"({settings.section}.rs485 = {settings.rs485!r}): {exc}"
        ) from exc


def transmit(transport: serial_asyncio.SerialTransport, settings: PortSettings, frame: bytes) -> float:
    """Put a frame on the line now; the monotonic time its last bit leaves the wire.

    With ``rs485 = "rts"`` RTS is raised around it and this returns once the frame is out
    (blocking on purpose: the driver must release the line before the peer answers). Otherwise the
    frame goes to the port at once, not on the event loop's next turn as pyserial-asyncio's
    transport would write it (it waits for the port to be writable first): one more wake-up, and
    under load one more wait for the interpreter, all of it silence on the line. What the port
    does not take at once (an empty output buffer always takes a frame) is left to the serial
    transport, as is everything while it still holds bytes, so the order on the line stays.
    """
    if settings.rs485 == "rts":
        _send_driving_rts(transport, settings, frame)
        return time.monotonic()
    # Taken before the write, which lets go of the interpreter: taken after it, a late return
    # would put the frame's end past a quick peer's answer.
    sent = time.monotonic()
    written = 0
    if not transport.get_write_buffer_size():
        try:
            written = os.write(transport.serial.fileno(), frame)
        except BlockingIOError:
            pass
        except OSError as exc:
            raise PortUnavailable(f"port {settings.port} failed: {exc}") from exc
    if written < len(frame):
        transport.write(frame[written:])
    return sent + settings.wire_time(len(frame))


def _send_driving_rts(transport: serial_asyncio.SerialTransport, settings: PortSettings, frame: bytes) -> None:
    port = transport.serial
    try:
        port.rts = True
        time.sleep(settings.rts_delay_before)
        port.write(frame)
        port.flush()  # tcdrain: until the UART has sent the last bit
        time.sleep(settings.rts_delay_after)
        port.rts = False
    except (OSError, serial.SerialException) as exc:
        raise PortUnavailable(f"port {settings.port} failed: {exc}") from exc


class Echo:
    """The echo of our own frames still to come back from a transceiver that hears itself.

    ``expect(frame)`` after sending; ``strip(data)`` on what arrives gives what follows the echo,
    or raises EchoMismatch when the bytes heard are not what was sent (a line fault).
    """

    def __init__(self) -> None:
        self._due = b""

    @property
    def due(self) -> bool:
        return bool(self._due)

    def expect(self, frame: bytes) -> None:
        self._due += frame

    def clear(self) -> None:
        self._due = b""

    def strip(self, data: bytes) -> bytes:
        heard, rest = data[: len(self._due)], data[len(self._due) :]
        if heard != self._due[: len(heard)]:
            self._due = b""
            raise EchoMismatch(f"echo {heard.hex()} does not match what was sent")
        self._due = self._due[len(heard) :]
        return rest


class Reopening:
    """When to open a failed port again, and what the log says of it.

    The first failure to open after the port was up (or at start) is logged (``"<name> port
    unavailable"``), a lost port too (``"<name> port lost"``), and then nothing until it opens
    again: a port unplugged for a day is one line, not thousands. Attempts are REOPEN_START
    seconds apart, doubling to REOPEN_MAX.
    """

    def __init__(self, name: str, port: str) -> None:
        self.name = name
        self.port = port
        self._pause = REOPEN_START
        self._reported = False
        self._log = structlog.get_logger(f"gateway.{name}")
        self._retry = f"every {REOPEN_START:g} s doubling to {REOPEN_MAX:g} s"

    async def failed(self, reason: str) -> None:
        """The port could not be opened: say so once, then wait before the next attempt."""
        if not self._reported:
            self._log.warning(f"{self.name} port unavailable", port=self.port, reason=reason, retry=self._retry)
            self._reported = True
        await asyncio.sleep(self._pause)
        self._pause = min(self._pause * 2, REOPEN_MAX)

    def opened(self) -> None:
        self._pause, self._reported = REOPEN_START, False

    def lost(self, reason: str) -> None:
        """The open port failed; it is opened again at once, and failures to are not logged again."""
        self._log.warning(f"{self.name} port lost", port=self.port, reason=reason, retry=self._retry)
        self._reported = True


class SerialProtocol(asyncio.Protocol):
    """A protocol on an open port: sends frames (direction and echo handled), and says when the port is lost.

    Subclasses take what arrives in `received` (the echo of our own frames already dropped; a
    mismatched echo goes to `echo_failed`), send with `send`, and run what they do beside in `serve`.
    """

    def __init__(self, settings: PortSettings) -> None:
        loop = asyncio.get_running_loop()
        self.settings = settings
        self.transport: serial_asyncio.SerialTransport | None = None
        self.made: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()  # why the port closed
        self.last_rx = 0.0  # monotonic time of the last byte heard
        self.tx_end = 0.0  # and of the last bit of our last frame
        self._echo = Echo()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(serial_asyncio.SerialTransport, transport)
        self.made.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"port {self.settings.port} closed" if exc is None else f"port {self.settings.port} failed: {exc}"
        if not self.lost.done():
            self.lost.set_result(reason)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        if self._echo.due and self.last_rx > self.tx_end + ECHO_GRACE:
            self._echo.clear()  # a transceiver that does not hear itself, though `echo` says it does
            self.echo_failed("the echo of our last frame never came")
        if self._echo.due:
            try:
                data = self._echo.strip(data)
            except EchoMismatch as exc:
                self.echo_failed(str(exc))
                return
        if data:
            self.received(data)

    def received(self, data: bytes) -> None:
        """Bytes from the line that are not our own echo."""
        raise NotImplementedError

    def echo_failed(self, reason: str) -> None:
        """What came back while our echo was due was something else: the line is garbled."""

    def send(self, frame: bytes) -> float:
        """Put a frame on the line now; when its last bit leaves the wire. A failed port closes."""
        assert self.transport is not None
        try:
            self.tx_end = transmit(self.transport, self.settings, frame)
        except PortUnavailable as exc:
            self.close(str(exc))
            return time.monotonic()
        if self.settings.echo:
            self._echo.expect(frame)
        return self.tx_end

    async def serve(self) -> str:
        """The protocol's own work on the open port, until the port is lost; why it was."""
        return await self.lost

    def close(self, reason: str) -> None:
        """Close the port now (if still open); `lost` says `reason` unless it already says why."""
        if not self.lost.done():
            self.lost.set_result(reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


async def serve_port(name: str, settings: PortSettings, protocol_factory: Callable[[], SerialProtocol]) -> None:
    """Keep a protocol on the port until cancelled: open it, and open it again with back-off when
    it cannot be opened or is lost (`Reopening`); logs ``"<name> port open"`` each time it opens."""
    reopening = Reopening(name, settings.port)
    log = structlog.get_logger(f"gateway.{name}")
    while True:
        protocol = protocol_factory()
        try:
            transport = await open_serial(settings, protocol)
            await protocol.made
            set_direction(transport, settings)
        except PortUnavailable as exc:
            await reopening.failed(str(exc))
            continue
        reopening.opened()
        log.info(f"{name} port open", port=settings.port, baudrate=settings.baudrate)
        try:
            reason = await protocol.serve()
        finally:
            protocol.close("stopped")
        reopening.lost(reason)


def _reason(exc: serial.SerialException | OSError) -> str:
    """The operating system's words for why a port cannot be opened."""
    return os.strerror(exc.errno) if exc.errno else str(exc)
