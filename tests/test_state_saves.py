"""Saves that many writes share: every write is on disk before its future is done, in order,
and the writes queued while a save runs share the next one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import StateError
from gateway.state import DeviceOverride, State, StateStore
from gateway.state_saves import StateSaves


class SlowStore:
    """A real state file whose first save waits until the test lets it go on."""

    def __init__(self, path: Path) -> None:
        self.store = StateStore(path)
        self.state = State()
        self.files_written = 0
        self.go_on = threading.Event()

    def update(self, change: Callable[[State], State]) -> State:
        self.go_on.wait(10)
        state = change(self.state)
        self.store.save(state)
        self.files_written += 1
        self.state = state
        return state


def rename(address: int, name: str) -> Callable[[State], State]:
    return lambda state: state.with_override(address, DeviceOverride(object_name=name))


async def test_writes_queued_during_a_save_share_the_next_one_and_each_is_on_disk_when_done(tmp_path) -> None:
    slow = SlowStore(tmp_path / "state.json")
    saves = StateSaves(slow.update)
    first = saves.save(rename(1, "A"))
    await asyncio.sleep(0.05)  # the first save has started and waits
    rest = [saves.save(rename(address, f"N{address}")) for address in range(2, 12)]
    later = saves.save(rename(1, "B"))  # after rename(1, "A"): applied in order
    slow.go_on.set()
    await first
    assert not any(each.done() for each in [*rest, later])
    await asyncio.gather(*rest, later)
    assert slow.files_written == 2  # 12 writes, 2 saves
    on_disk = StateStore(tmp_path / "state.json").load()
    assert {address: override.object_name for address, override in on_disk.overrides.items()} == {
        1: "B",
        **{address: f"N{address}" for address in range(2, 12)},
    }
    assert (saves.saves, saves.changes) == (2, 12)


async def test_a_save_that_fails_fails_every_write_it_carried_and_the_next_ones_go_on(tmp_path) -> None:
    slow = SlowStore(tmp_path / "state.json")
    saves = StateSaves(slow.update)
    saves.save(rename(1, "A"))
    await asyncio.sleep(0.05)
    carried = [saves.save(rename(2, "B")), saves.save(rename(300, "X"))]  # 300 is no Modbus address
    slow.go_on.set()
    for each in carried:
        with pytest.raises(StateError):
            await each
    await saves.save(rename(3, "C"))
    on_disk = StateStore(tmp_path / "state.json").load()
    assert {address: override.object_name for address, override in on_disk.overrides.items()} == {1: "A", 3: "C"}
