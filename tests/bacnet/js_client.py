"""How the tests run `js/client.js`, the client built on @bacnet-js/client: a BACnet stack this
project did not write and that shares no code with bacpypes3 (npm, pinned in js/package-lock.json,
installed by .ci/run into the virtualenv under <venv>/node). Without Node.js or the package these
tests fail; they never skip.

    results = await bacnet_js(gateway_port, {"op": "whoIs", "waitMs": 1500})   # on loopback
    argv, env = js_command({"server": "10.231.1.1:47808", ..., "steps": [...]})  # anywhere else
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from tests.bacnet.client import free_udp_port

SCRIPT = Path(__file__).parent / "js" / "client.js"
MODULES = Path(sys.prefix) / "node" / "node_modules"


def js_command(program: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment that run `program` (see js/client.js)."""
    node = shutil.which("node")
    assert node, "Node.js is missing: .ci/run installs it"
    assert (MODULES / "@bacnet-js" / "client").is_dir(), f"@bacnet-js/client is missing from {MODULES}: run .ci/run"
    return [node, str(SCRIPT), json.dumps(program)], {"NODE_PATH": str(MODULES)}


async def bacnet_js(port: int, *steps: dict[str, Any]) -> list[Any]:
    """Run the steps against the gateway at 127.0.0.1:`port`; one result per step."""
    argv, env = js_command({"serverPort": port, "clientPort": free_udp_port(), "steps": list(steps)})
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, **env}
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return json.loads(out)
