"""A face reads the nodes through read-only views: the type checker refuses every write to them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MYPY = Path(sys.executable).parent / "mypy"

FACE = """\
from gateway.nodes.api import NodeAPI


def face(nodes: NodeAPI) -> None:
    node = nodes.nodes[1]
    print(node.address, node.profile.panel, node.health.online, node.cache.readings.get(1000),
          node.cache.scale_of, node.cache.block(range(1000, 1002)))
    nodes.nodes[2] = node  # line 8
    node.health.online = False
    node.cache.readings[1000] = node.cache.readings[1002]
    node.cache.store(1000, [1], 0.0)
    node.profile = node.profile
    node.profile.serial = 7  # line 13
"""


def test_a_face_that_writes_to_a_node_view_does_not_type_check(tmp_path) -> None:
    (tmp_path / "face.py").write_text(FACE)
    result = subprocess.run(
        [str(MYPY), "--cache-dir", str(tmp_path / "cache"), str(tmp_path / "face.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    errors = dict(re.findall(r"face\.py:(\d+): error: (.*)", result.stdout))
    assert {int(line) for line in errors} == set(range(8, 14)), result.stdout + result.stderr  # reads pass
    assert errors["9"].startswith('Property "online" defined in "HealthView" is read-only')
    assert errors["10"].startswith('Unsupported target for indexed assignment ("Mapping[int, Reading]")')
    assert errors["11"].startswith('"CacheView" has no attribute "store"')
