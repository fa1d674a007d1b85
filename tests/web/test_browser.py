"""The web face in a real browser: Debian's Chromium, headless, driven through chromedriver.

Nothing is downloaded: Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver
(.ci/install-tools installs both) and told to stay offline. The browser talks to 127.0.0.1 only.
Selenium blocks, and the gateway serves on this test's event loop: every browser step runs on a
thread of its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gateway.pointmap import load
from tests.snmp.netsnmp import run_async, varbinds
from tests.snmp.rig import READ, instance
from tests.support import eventually, free_port
from tests.web.conftest import PASSWORD

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
)  # the face's self-signed certificate
WAIT = 20.0  # seconds a browser step may take on a loaded machine

PM = load()
CURRENT_7 = PM.find("current", group="branch", channel=7)
ALARM_7 = PM.find("alarm_status", group="alarms", channel=7)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(f"{path} is missing: run .ci/install-tools (Debian packages chromium, chromium-driver)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers or browsers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: WebDriver, url: str) -> str:
    driver.get(f"{url}/nodes/1")  # not logged in: the login page first
    WebDriverWait(driver, WAIT).until(expected_conditions.url_contains("/login"))
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.title_contains("Overview"))
    return driver.find_element(By.TAG_NAME, "main").text


def open_node(driver: WebDriver, url: str) -> str:
    driver.get(f"{url}/nodes/1/values")
    driver.execute_script("window.loadedOnce = true;")  # gone if the page reloads
    return cell(driver, CURRENT_7.register)


def cell(driver: WebDriver, register: int) -> str:
    return driver.find_element(By.CSS_SELECTOR, f'[data-register="{register}"]').text


def wait_for_cell(driver: WebDriver, register: int, text: str) -> bool:
    WebDriverWait(driver, WAIT).until(lambda d: cell(d, register) == text)
    return bool(driver.execute_script("return window.loadedOnce === true;"))


def clear_alarms(driver: WebDriver) -> str:
    driver.find_element(By.LINK_TEXT, "Clear latched alarms").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.title_contains("Confirm"))
    driver.find_element(By.ID, "confirm").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "outcome")))
    return driver.find_element(By.ID, "outcome").text


async def test_log_in_watch_values_change_live_and_clear_a_latched_alarm_seen_on_snmp(
    web_site, browser, tmp_path
) -> None:
    snmp_port = free_port(socket.SOCK_DGRAM)
    site = await web_site(
        1, sections={"snmp": {"enabled": True, "address": "127.0.0.1", "port": snmp_port, "read_community": READ}}
    )
    panel = site.line.panel(1)
    node = site.gateway.nodes.nodes[1]
    panel.write(165, [0, 0, 0, 0, 0, 30])  # alarms latch at once
    panel.set_current(7, 19.0)  # 95 % of the 20 A breaker: High-High and High latch
    await eventually(lambda: node.cache.reading(ALARM_7).value == 0x0103, what="latched")
    panel.set_current(7, 10.0)
    await eventually(lambda: node.cache.reading(ALARM_7).value == 0x0003, what="only the latched bits left")

    overview = await asyncio.to_thread(log_in, browser, site.url)
    assert "RS-485 bus" in overview and "serving" in overview

    assert await asyncio.to_thread(open_node, browser, site.url) == "10.0"
    assert await asyncio.to_thread(cell, browser, ALARM_7.register) == "0x0003"
    panel.set_current(7, 9.5)  # below every threshold: the latched bits stay, nothing new
    assert await asyncio.to_thread(wait_for_cell, browser, CURRENT_7.register, "9.5"), "the page was reloaded"

    async def snmp_alarm() -> int:
        result = await run_async(
            tmp_path / "netsnmp",
            "snmpget",
            "-v2c",
            "-c",
            READ,
            "-On",
            "-t",
            "2",
            "-r",
            "1",
            f"udp:127.0.0.1:{snmp_port}",
            instance(ALARM_7, 1),
        )
        [found] = varbinds(result.stdout)
        return found.number

    assert await snmp_alarm() == 0x0003
    assert "cleared" in await asyncio.to_thread(clear_alarms, browser)
    await eventually(lambda: node.cache.reading(ALARM_7).value == 0, what="the next poll reads the alarm cleared")
    assert await snmp_alarm() == 0
    assert panel.read(ALARM_7.register, 1) == [0]


async def test_a_browser_logs_in_while_other_hosts_hold_every_connection(web_site, browser) -> None:
    site = await web_site()  # 32 connections, 8 an address, as shipped
    flood = [
        await asyncio.open_connection("127.0.0.1", site.port, local_addr=(host, 0))
        for host in ("127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7")
        for _ in range(8)
    ]
    await eventually(lambda: site.face.server.open_connections == 32, what="every connection held")
    overview = await asyncio.to_thread(log_in, browser, site.url)
    assert "RS-485 bus" in overview
    cookie = await asyncio.to_thread(browser.get_cookie, "bcpm_session")
    assert cookie is not None and cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert site.face.server.stats.made_room >= 1
    for _, writer in flood:
        writer.close()
