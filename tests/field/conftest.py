"""The field acceptance suite's site: see tests/field/site.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.field.site import Site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """Make sites (see Site); their processes are stopped after the test, killed if they hang."""
    made: list[Site] = []

    def make(*args: Any, **kwargs: Any) -> Site:
        made.append(Site(tmp_path / f"site{len(made)}", *args, **kwargs))
        return made[-1]

    yield make
    for built in made:
        for process in (built.process, built.simulator.process):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
