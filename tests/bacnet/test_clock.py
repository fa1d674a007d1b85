"""The clock TimeSynchronization sets (gateway/bacnet/clock.py)."""

from __future__ import annotations

import calendar
import time

from bacpypes3.basetypes import DateTime
from bacpypes3.primitivedata import Date, Time

from gateway.bacnet.clock import Clock, epoch_of


def test_a_sync_moves_the_clock_only_when_bacnet_owns_it() -> None:
    told = time.time() + 3600
    owned, not_owned = Clock(follows_bacnet=True), Clock(follows_bacnet=False)
    assert owned.synchronize(told) is True
    assert abs(owned.time() - told) < 5
    assert not_owned.synchronize(told) is False
    assert abs(not_owned.time() - time.time()) < 5
    assert (not_owned.last_told, not_owned.synchronizations) == (told, 1)


def test_epoch_of_a_utc_and_a_local_time() -> None:
    when = DateTime(date=Date("2030-05-06"), time=Time("12:34:56.78"))
    assert epoch_of(when, utc=True) == calendar.timegm((2030, 5, 6, 12, 34, 56)) + 0.78
    assert epoch_of(when, utc=False) == time.mktime((2030, 5, 6, 12, 34, 56, 0, 0, -1)) + 0.78


def test_a_time_with_unspecified_fields_is_no_time() -> None:
    assert epoch_of(DateTime(date=Date("2030-05-06"), time=Time("*:00:00")), utc=True) is None
    assert epoch_of(DateTime(date=Date((255, 5, 6, 255)), time=Time("12:00:00")), utc=True) is None
