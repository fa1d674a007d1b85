"""Simulated boards for a bus without a pty: requests in, reply PDUs out, at memory speed.

`gateway.bus.memory.MemoryPort` puts this under a `Bus` (the simulator itself knows nothing of
the bus), so everything above the bus runs against simulated meters without a serial port:

    line = MemoryLine([Board(1)])
    bus = Bus(LineSettings("memory"), open_transport=MemoryPort(line))
    line.vanish(2)       # panel 2 stops answering
    line.script.add(Fault(exception=0x06), address=1)   # panel 1's next reply: busy
    line.unplug()        # the adapter is gone: the open transport fails, and opening it fails too

The boards hear only a master at their baud rate and the line's parity, as on a wire. There are
no frames here, so the script takes only the faults that change the answer (gateway.sim.faults).
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.sim.faults import FaultScript
from gateway.sim.line import reply_pdu
from gateway.sim.meter import Board, Panel


class MemoryLine:
    """Boards that answer Modbus request PDUs directly; counts what they were asked."""

    def __init__(self, boards: Iterable[Board], parity: str = "N") -> None:
        self.boards = tuple(boards)
        self.parity = parity
        self._panels = {panel.address: panel for board in self.boards for panel in board.panels}
        self.requests: list[tuple[int, bytes]] = []
        self.plugged = True
        self._absent: set[int] = set()
        self.script = FaultScript(self._panels, frames=False)

    def panel(self, address: int) -> Panel:
        return self._panels[address]

    def vanish(self, address: int) -> None:
        self._absent.add(address)

    def restore(self, address: int) -> None:
        self._absent.discard(address)

    def unplug(self) -> None:
        """The adapter is gone until `plug`."""
        self.plugged = False

    def plug(self) -> None:
        self.plugged = True

    def hears(self, baudrate: int, parity: str) -> bool:
        """Whether a master at these line settings is understood (the others are noise to the boards)."""
        return parity == self.parity and all(board.baudrate == baudrate for board in self.boards)

    def answer(self, unit: int, pdu: bytes) -> bytes | None:
        """The reply PDU of the panel at `unit` (an exception reply too), None when nothing answers."""
        self.requests.append((unit, pdu))
        panel = self._panels.get(unit)
        if panel is None or unit in self._absent:
            return None
        fault = self.script.take(unit)
        answer = None if fault is None else fault.answer(pdu)
        if answer is None:
            answer = reply_pdu(panel, pdu)
        return None if fault is not None and fault.silent else answer
