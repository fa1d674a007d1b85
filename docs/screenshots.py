"""The README's pictures of the web face, taken by Debian's Chromium, headless, as the browser tests drive it.

    python docs/screenshots.py          # about four minutes; writes docs/web-*.png

One simulated board with the demo's data-center load on a simulated line at 115200 baud, on
loopback, and the gateway (every face on loopback) with its web face; a few circuits named as
an installer would, one driven over its high-current threshold and kept there (in alarm), one
driven over and back (latched). The trends' history gets a sample a second for three minutes,
each dated a minute after the one before: three hours of history in three minutes of the
simulated panel, for the picture only (the gateway samples once a minute).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.app import running  # noqa: E402
from gateway.audit import AUDIT_FILE, Actor, AuditLog  # noqa: E402
from gateway.config import load_config, parse_config  # noqa: E402
from gateway.config_file import change_settings, configuration_text  # noqa: E402
from gateway.files import write_atomically  # noqa: E402
from gateway.sim import Board, SimulatedLine  # noqa: E402
from gateway.sim.load import Circuit, load_named  # noqa: E402
from gateway.web.auth import hash_password  # noqa: E402
from tests.support import free_port  # noqa: E402

DOCS = Path(__file__).resolve().parent
PASSWORD = "screenshots"
NAMES = {1: "Rack A01 PDU A", 2: "Rack A01 PDU B", 3: "Rack A02 PDU A", 4: "Rack A02 PDU B", 9: "CRAC 1"}
NAMES |= {10: "CRAC 2", 17: "Lighting", 43: "Mains L1", 44: "Mains L2", 45: "Mains L3", 46: "Neutral"}
SAMPLES = 180


def browser(folder: Path, width: int, height: int) -> webdriver.Chrome:
    """Debian's Chromium, headless, offline, trusting nothing but loopback's self-signed certificate."""
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",  # the gateway's self-signed certificate
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--user-data-dir={folder}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def shoot(url: str, folder: Path, pages: dict[str, tuple[str, int]], width: int = 1280, mobile: bool = False) -> None:
    """Log in, then each page (name -> (path, most pixels tall)) to docs/web-NAME.png, whole."""
    driver = browser(folder / f"chromium-{width}", width, 900)
    try:
        driver.get(f"{url}/login")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()
        time.sleep(1)
        for name, (path, most) in pages.items():
            driver.get(url + path)
            time.sleep(2)
            height = min(most, driver.execute_script("return document.documentElement.scrollHeight"))
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            driver.save_screenshot(str(DOCS / f"web-{name}.png"))
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    finally:
        driver.quit()


def drive(board: Board, channel: int, share: float) -> None:
    """Hold a circuit of the board's first panel at a share of its breaker (the load keeps its noise)."""
    load = board.load
    assert load is not None
    panel_load = load.panels[0]
    at = next(i for i, c in enumerate(panel_load.circuits) if c.channel == channel)
    circuit = panel_load.circuits[at]
    panel_load.circuits[at] = Circuit(channel, circuit.breaker * share / 100, circuit.breaker, circuit.power_factor)


async def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        board = Board(1, baudrate=115200, load=load_named("datacenter", seed=3))
        with SimulatedLine([board], baudrate=115200, turnaround=0.002) as line:
            raw = {
                "gateway": {"state_file": str(folder / "state.json")},
                "serial": {"port": line.path, "baudrate": 115200, "scan": "1-4", "probe_timeout": 0.02},
                "bacnet": {"address": "127.0.0.1/8", "port": free_port(socket.SOCK_DGRAM)},
                "snmp": {"address": "127.0.0.1", "port": free_port(socket.SOCK_DGRAM), "location": "Data hall 2"},
                "modbus_tcp": {"address": "127.0.0.1", "port": free_port()},
                "web": {"enabled": True, "address": "127.0.0.1", "port": free_port()},
            }
            site = folder / "gateway.toml"
            raw["web"]["password_hash"] = hash_password(PASSWORD)
            config = parse_config(raw)
            write_atomically(site, configuration_text(config, secrets=True).encode(), 0o600)
            async with running(load_config(site)) as gateway:
                await gateway.nodes.wait_ready()
                await gateway.nodes.name_circuits(1, NAMES)
                panel = line.panel(1)
                panel.write(165, [2, 2, 10, 10, 2, 30])  # High alarms latch after 2 s
                drive(board, 5, 66.0)  # over the 60 % threshold: in alarm
                drive(board, 12, 66.0)  # over, then back: latched
                await asyncio.sleep(8)
                drive(board, 12, 35.0)
                history = gateway.history
                assert history is not None
                start = time.time() - 60 * SAMPLES
                for sample in range(SAMPLES):
                    if sample == SAMPLES // 3:
                        drive(board, 7, 48.0)  # a step of the chosen circuit, for the trend
                    history.sample(gateway.nodes.nodes, start + 60 * sample)
                    await asyncio.sleep(1)
                # A change saved and waiting for its restart, as the settings page shows it.
                admin = Actor("admin", "127.0.0.1")
                change_settings(site, {"bacnet.device_id_offset": 60000}, admin, AuditLog(folder / AUDIT_FILE))
                url = f"https://127.0.0.1:{gateway.config.web.port}"
                pages = {
                    "panel": ("/nodes/1", 2000),
                    "trends": ("/nodes/1/trends?channel=7", 2000),
                    "settings": ("/settings", 1500),
                }
                await asyncio.to_thread(shoot, url, folder, pages)
                await asyncio.to_thread(shoot, url, folder, {"panel-phone": ("/nodes/1", 1400)}, 390, True)


if __name__ == "__main__":
    asyncio.run(main())
