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
from bacpypes3.primitivedata import ObjectIdentifier
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from gateway.app import serve
from gateway.config import load_config
from gateway.pointmap import load
from tests.bacnet.client import Client, free_udp_port
from tests.snmp.netsnmp import run_async, varbinds
from tests.snmp.rig import READ, instance
from tests.support import config_file, eventually, eventually_async, free_port
from tests.web.conftest import PASSWORD, PASSWORD_HASH

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


def confirmed(driver: WebDriver, link: str) -> str:
    """Follow an action's link, confirm it on its page; the outcome the page tells."""
    driver.find_element(By.LINK_TEXT, link).click()
    WebDriverWait(driver, WAIT).until(expected_conditions.title_contains("Confirm"))
    driver.find_element(By.ID, "confirm").click()
    WebDriverWait(driver, WAIT).until(expected_conditions.presence_of_element_located((By.ID, "outcome")))
    return driver.find_element(By.ID, "outcome").text


def clear_alarms(driver: WebDriver) -> str:
    return confirmed(driver, "Clear latched alarms")


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


def circuit_class(driver: WebDriver, channel: int) -> str:
    return driver.find_element(By.ID, f"c{channel}").get_attribute("class")


def open_panel(driver: WebDriver, url: str) -> str:
    driver.get(f"{url}/nodes/1")
    driver.execute_script("window.loadedOnce = true;")  # gone if the page reloads
    return circuit_class(driver, 7)


def wait_for_state(driver: WebDriver, channel: int, state: str) -> tuple[bool, str, str]:
    """Until the circuit shows the state; whether the page was never reloaded, its amps and its bar."""
    WebDriverWait(driver, WAIT).until(lambda d: f"s-{state}" in circuit_class(d, channel).split())
    cell = driver.find_element(By.ID, f"c{channel}")
    return (
        bool(driver.execute_script("return window.loadedOnce === true;")),
        cell.find_element(By.CLASS_NAME, "amps").text,
        cell.find_element(By.CSS_SELECTOR, "rect.fill").get_attribute("width"),
    )


async def test_the_panel_shows_a_circuit_going_into_alarm_and_latched_without_a_reload(web_site, browser) -> None:
    site = await web_site(1)
    panel = site.line.panel(1)
    panel.write(165, [0, 0, 0, 0, 0, 30])  # alarms latch at once
    await site.gateway.nodes.name_circuits(1, {7: "Rack A12 PDU A"})
    node, current_7 = site.gateway.nodes.nodes[1], PM.find("current", group="branch", channel=7)
    panel.set_current(7, 5.0)  # 25 %: drawing nothing is a Low alarm (the meter's own, as for a tripped breaker)
    await eventually(lambda: node.cache.reading(current_7).value == 5.0, what="5 A read")
    await asyncio.to_thread(log_in, browser, site.url)
    assert "s-normal" in (await asyncio.to_thread(open_panel, browser, site.url)).split()
    name = await asyncio.to_thread(lambda: browser.find_element(By.CSS_SELECTOR, "#c7 .name").text)
    assert name == "Rack A12 PDU A"
    panel.set_current(7, 13.0)  # 65 % of its 20 A breaker: over the High threshold (60 %)
    assert await asyncio.to_thread(wait_for_state, browser, 7, "alarm") == (True, "13.0 A", "65.0")
    panel.set_current(7, 5.0)  # the condition gone, the High alarm latched
    assert await asyncio.to_thread(wait_for_state, browser, 7, "latched") == (True, "5.0 A", "25.0")
    panel.set_current(8, 10.5)  # 52.5 %: near the threshold
    assert (await asyncio.to_thread(wait_for_state, browser, 8, "near"))[0]
    assert "cleared" in await asyncio.to_thread(clear_alarms, browser)
    await asyncio.to_thread(open_panel, browser, site.url)
    assert (await asyncio.to_thread(wait_for_state, browser, 7, "normal"))[1] == "5.0 A"


def settings_form(driver: WebDriver, url: str, values: dict[str, str]) -> str:
    """Fill keys of the BACnet form of the settings page, save it; the page's message."""
    driver.get(f"{url}/settings")
    for name, value in values.items():
        field = driver.find_element(By.ID, f"first-{name}")
        field.clear()
        field.send_keys(value)
    field.find_element(By.XPATH, "ancestor::form//button[@type='submit']").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.ID, "saved") or d.find_elements(By.ID, "errors"))
    found = driver.find_elements(By.ID, "errors") or driver.find_elements(By.ID, "saved")
    return found[0].text


async def test_a_setting_changed_in_the_browser_is_applied_by_the_restart_it_asks_for(
    make_line, browser, tmp_path
) -> None:
    line = make_line(1)
    web_port, bacnet_port = free_port(), free_udp_port()
    site_file = config_file(
        line,
        tmp_path,
        web={"enabled": True, "address": "127.0.0.1", "port": web_port, "password_hash": PASSWORD_HASH},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": bacnet_port},
    )
    server = asyncio.create_task(serve(lambda: load_config(site_file)))
    url = f"https://127.0.0.1:{web_port}"
    client = Client(bacnet_port)
    try:
        await eventually_async(lambda: listening(web_port), what="the web face listening")
        await asyncio.to_thread(log_in, browser, url)
        refused = await asyncio.to_thread(settings_form, browser, url, {"bacnet.device_id_offset": "4194100"})
        assert "bacnet.device_id_offset = 4194100: allowed an integer 0-4194056 (offset + 247 <= 4194303)" in refused
        saved = await asyncio.to_thread(settings_form, browser, url, {"bacnet.device_id_offset": "60000"})
        assert "Saved: bacnet.device_id_offset" in saved
        await client.find_router()
        assert await client.read(client.node(1), "device,4194303", "object-identifier") == ObjectIdentifier(
            "device,50001"
        )  # until the restart
        assert "restarting" in await asyncio.to_thread(confirmed, browser, "Restart the gateway now")

        async def new_offset() -> bool:
            try:
                found = await client.read(client.node(1), "device,4194303", "object-identifier")
            except Exception:  # between the two lives: no answer
                return False
            return found == ObjectIdentifier("device,60001")

        await eventually_async(new_offset, what="device 60001 over BACnet after the restart")
        router = await client.app.who_is(60000, 60000, address=client.router, timeout=2)
        assert [i_am.iAmDeviceIdentifier for i_am in router] == [ObjectIdentifier("device,60000")]
    finally:
        client.close()
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


def download_and_upload(driver: WebDriver, url: str, folder: Path) -> str:
    """Download the configuration as a browser saves it, change a value, upload it back."""
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    driver.get(f"{url}/settings")
    driver.find_element(By.LINK_TEXT, "Download").click()
    saved = folder / "gateway.toml"
    WebDriverWait(driver, WAIT).until(lambda _: saved.exists() and saved.stat().st_size > 0)
    text = saved.read_text()
    assert "trap_rate = 10" in text and "read_community" not in text.split("# Left out")[1].split("\n", 1)[1]
    changed = folder / "changed.toml"
    changed.write_text(text.replace("trap_rate = 10", "trap_rate = 25"))
    driver.find_element(By.CSS_SELECTOR, "form[action='/settings/upload'] input[type=file]").send_keys(str(changed))
    driver.find_element(By.CSS_SELECTOR, "form[action='/settings/upload'] button").click()
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.ID, "saved") or d.find_elements(By.ID, "errors"))
    return (driver.find_elements(By.ID, "saved") or driver.find_elements(By.ID, "errors"))[0].text


async def test_the_configuration_downloads_and_uploads_back_in_the_browser(web_site, browser, tmp_path) -> None:
    site = await web_site(from_file=True, sections={"snmp": {"read_community": "s3cret-read"}})
    await asyncio.to_thread(log_in, browser, site.url)
    folder = tmp_path / "downloads"
    folder.mkdir()
    assert "Saved: snmp.trap_rate." in await asyncio.to_thread(download_and_upload, browser, site.url, folder)
    assert "s3cret-read" not in (folder / "gateway.toml").read_text()
    config = load_config(site.gateway.config.source)
    assert (config.snmp.trap_rate, config.snmp.read_community) == (25, "s3cret-read")
