"""The loop thread (gateway/threads.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from gateway.threads import LoopThread


async def test_a_loop_thread_carries_its_name_to_the_operating_system() -> None:
    """So `top -H`, `ps -L` and /proc/PID/task/TID/comm tell the bus thread from the main one."""

    async def own_name() -> str:
        return Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    thread = LoopThread("bus")
    thread.start(own_name)
    try:
        assert await asyncio.wait_for(thread.wait(), 5) == "bus"
    finally:
        thread.stop()
