"""An event loop on a thread of its own, running one main coroutine.

The bus keeps RTU timing on such a thread, away from the main loop where BACnet and SNMP work can
hold the loop for tens of milliseconds. Its outcome (result, error or cancellation) travels back
to whoever awaits :meth:`LoopThread.wait`, so nothing that goes wrong there is swallowed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._started = threading.Event()
        self._outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None

    def start(self, main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self._thread = threading.Thread(target=self._run, args=(main,), name=self.name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self, main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        _name_native_thread(self.name)

        async def wrapper() -> Any:
            self.loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            self._started.set()
            return await main()

        try:
            self._outcome.set_result(asyncio.run(wrapper()))
        except asyncio.CancelledError:
            self._outcome.set_result(None)  # stopped on request
        except BaseException as error:  # noqa: BLE001 - handed to the waiter, not swallowed
            self._outcome.set_exception(error)
        finally:
            self._started.set()

    def call(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on this thread's loop; thread-safe."""
        if self.loop is None or self._outcome.done():
            coro.close()
            raise RuntimeError(f"{self.name} thread is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def wait(self) -> Any:
        """Await the main coroutine's outcome from another event loop.

        Shielded: a waiter that gives up must not cancel the outcome for everyone else.
        """
        return await asyncio.shield(asyncio.wrap_future(self._outcome))

    @property
    def done(self) -> bool:
        return self._outcome.done()

    @property
    def native_id(self) -> int | None:
        """The thread's id to the kernel (for its CPU time in /proc), once started."""
        return self._thread.native_id if self._thread is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the main coroutine and wait for the thread to end."""
        if self.loop is not None and self._task is not None and not self._outcome.done():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to cancel
                self.loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout)


def _name_native_thread(name: str) -> None:
    """Give the calling thread its name in the operating system too (15 bytes at most), so that
    `top -H`, `ps -L` and /proc/PID/task/TID/comm tell it apart from the main thread."""
    with contextlib.suppress(OSError):  # no /proc (not Linux): the name stays Python's alone
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(name[:15])
