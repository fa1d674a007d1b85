"""Saves of the state file that many writes share: each write is durable before it is
acknowledged, but the writes that arrive while one save is under way share the next fsync.

    saves = StateSaves(nodes.update_state)
    await saves.save(lambda state: state.with_override(3, DeviceOverride(object_name="PDU_A")))

A save (temp file, fsync, rename, fsync of the folder) takes tens of milliseconds on an SD card;
a client writing names in a loop used to cost one each. Now at most one save runs at a time, on
a worker thread, and it applies every change queued meanwhile, in order. A save that fails fails
every write it carried.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from gateway.state import State

__all__ = ["StateSaves"]

Change = Callable[[State], State]


class StateSaves:
    def __init__(self, update: Callable[[Change], State]) -> None:
        self._update = update  # applies a change and saves the file (NodeService.update_state)
        self._pending: list[tuple[Change, asyncio.Future[None]]] = []
        self._saving: asyncio.Task[None] | None = None
        self.saves = 0  # files written
        self.changes = 0  # changes they carried

    def save(self, change: Change) -> asyncio.Future[None]:
        """Queue `change`; the future is done when a save holding it is on disk. Changes are
        applied in the order they were queued."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, done))
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._save_pending())
        return done

    async def _save_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._update, functools.partial(_apply, [change for change, _ in batch]))
            except Exception as error:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
            else:
                self.saves += 1
                self.changes += len(batch)
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


def _apply(changes: list[Change], state: State) -> State:
    for change in changes:
        state = change(state)
    return state
