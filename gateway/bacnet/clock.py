"""The gateway's BACnet clock: what its devices report as Local_Date / Local_Time.

The board's OS clock, shifted by the last (UTC)TimeSynchronization a BMS sent when
`rtc_control = "bacnet"` (the BCPME's RTC_Control). With `rtc_control = "modbus"` a sync is
recorded and logged but not applied. The OS clock itself is never set: that is the job of the
board's NTP, and a BACnet client must not be able to move the clock of the whole machine.

    clock = Clock(follows_bacnet=True)
    clock.synchronize(told)          # epoch seconds from a TimeSynchronization
    Date.now(clock.time())           # what Local_Date shows
"""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass

from bacpypes3.basetypes import DateTime

__all__ = ["Clock", "epoch_of"]

UNSPECIFIED = 255  # a BACnet date or time field that is "any"


@dataclass(slots=True)
class Clock:
    follows_bacnet: bool
    offset: float = 0.0  # seconds added to the OS clock
    last_told: float | None = None  # the time the last synchronization gave, epoch seconds
    synchronizations: int = 0

    def time(self) -> float:
        """Now, in epoch seconds."""
        return time.time() + self.offset

    def synchronize(self, told: float) -> bool:
        """Record a synchronization; True when it was applied."""
        self.last_told = told
        self.synchronizations += 1
        if self.follows_bacnet:
            self.offset = told - time.time()
        return self.follows_bacnet


def epoch_of(when: DateTime, *, utc: bool) -> float | None:
    """Epoch seconds of a TimeSynchronization's DateTime (local time unless `utc`); None when a
    field is unspecified, as a sync must give a definite time."""
    year, month, day, _ = when.date
    hour, minute, second, hundredths = when.time
    if UNSPECIFIED in (year, month, day, hour, minute, second):
        return None
    fields = (year + 1900, month, day, hour, minute, second, 0, 0, -1)
    try:
        whole = calendar.timegm(fields) if utc else time.mktime(fields)
    except (OverflowError, ValueError):
        return None
    return whole + (0 if hundredths == UNSPECIFIED else hundredths / 100)
