"""A faithful BCPM simulator behind a virtual serial line, for the demo, the tests and the benchmarks.

`meter` holds the boards: two Modbus nodes (panels) per board answering the vendor register map
with the meter's own rules (scale registers, float copies, 32-bit energy, demand and maxima,
logical 2- and 3-phase meters, alarm bits with delays, reset codes, 0x8000/NaN for points a model
or a channel lacks, Report Slave ID). `physics` and `alarms` are the pure parts behind it; `load`
makes the circuits draw current like a live panel (profiles or a CSV file). `line`
puts boards on a pty with RTU timing at a baud rate and injects faults; `faults` says which:
random rates, or a script of faults played reply by reply, per node or for the line; `cli` is the
`simulate` command; `memory` answers request PDUs directly, for a bus without a pty
(`gateway.bus.memory`).

    with SimulatedLine([Board(1, model="A")], link="/tmp/ttyBCPM") as line:
        line.panel(1).set_current(12, 17.5)
        line.faults = Faults(crc_error=0.05)
        line.script.add(Fault(exception=0x06), address=1)   # node 1's next reply: busy
        ...  # a Modbus RTU master on /tmp/ttyBCPM reads 17.5 A at register 1347
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.sim.faults import Fault, Faults, FaultScript
    from gateway.sim.line import LineStats, SimulatedLine
    from gateway.sim.memory import MemoryLine
    from gateway.sim.meter import (
        Board,
        IllegalAddress,
        IllegalFunction,
        IllegalValue,
        MeterRefusal,
        Panel,
        model_token,
    )

# Where each name lives. They load when first asked for, not with the package: `bcpm-gateway run`
# imports the `simulate` command's options, and the simulator itself would cost it some 0.3 MB resident.
_HOMES = {
    "Fault": "faults",
    "Faults": "faults",
    "FaultScript": "faults",
    "LineStats": "line",
    "SimulatedLine": "line",
    "MemoryLine": "memory",
    "Board": "meter",
    "IllegalAddress": "meter",
    "IllegalFunction": "meter",
    "IllegalValue": "meter",
    "MeterRefusal": "meter",
    "Panel": "meter",
    "model_token": "meter",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


__all__ = [
    "Board",
    "Fault",
    "FaultScript",
    "Faults",
    "IllegalAddress",
    "IllegalFunction",
    "IllegalValue",
    "LineStats",
    "MemoryLine",
    "MeterRefusal",
    "Panel",
    "SimulatedLine",
    "model_token",
]
