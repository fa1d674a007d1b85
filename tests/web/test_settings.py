"""The settings pages over real HTTPS: every change through the safe write path (checked as
`check-config` checks, written whole, the file before kept, audited), refusals with their message,
the configuration downloaded and uploaded, and uploads of a BBMD table and a certificate."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import tomllib
from ipaddress import IPv4Address
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.audit import AUDIT_FILE
from gateway.config import SETTINGS_FILE, UPLOADED_BDT, load_config
from gateway.web.tls import CERT_NAME, KEY_NAME, write_self_signed
from tests.web.conftest import Site


async def csrf_of(client: aiohttp.ClientSession, page: str = "/settings") -> str:
    async with client.get(page) as reply:
        return re.search(r'name="csrf" value="([^"]+)"', await reply.text())[1]


async def post(client: aiohttp.ClientSession, path: str, fields: dict[str, str]) -> tuple[int, str]:
    async with client.post(path, data={"csrf": await csrf_of(client), **fields}) as reply:
        return reply.status, html.unescape(await reply.text())


async def upload(client: aiohttp.ClientSession, path: str, **files: bytes) -> tuple[int, str]:
    form = aiohttp.FormData({"csrf": await csrf_of(client)})
    for name, content in files.items():
        form.add_field(name, content, filename=f"{name}.txt", content_type="text/plain")
    async with client.post(path, data=form) as reply:
        return reply.status, html.unescape(await reply.text())


def audit(site: Site) -> list[dict[str, str]]:
    path = Path(site.gateway.config.gateway.state_file).parent / AUDIT_FILE
    return [json.loads(line) for line in path.read_text().splitlines()]


def settings_file(site: Site) -> Path:
    return site.gateway.config.gateway.state_file.parent / SETTINGS_FILE


BACNET_FORM = {  # the BACnet form as the page shows it, as a browser sends it back
    "bacnet.device_id_offset": "50000",
    "bacnet.network": "50",
    "bacnet.ip_network": "auto",
    "bacnet.address": "127.0.0.1/8",
    "bacnet.port": "47808",
    "bacnet.bbmd": "false",
    "bacnet.foreign_bbmd": "",
    "bacnet.foreign_ttl": "300",
    "bacnet.reinit_password": "",
    "bacnet.read_only": "false",
}


async def test_a_change_is_checked_saved_beside_the_state_audited_and_waits_for_a_restart(web_site) -> None:
    site = await web_site(from_file=True)
    client = await site.logged_in()
    async with client:
        async with client.get("/settings") as reply:
            page = await reply.text()
        assert 'name="bacnet.device_id_offset" id="first-bacnet.device_id_offset" value="50000"' in page
        assert "web.password_hash" in page and "bcpm-gateway set-password" in page  # not here, and why
        status, page = await post(client, "/settings", {**BACNET_FORM, "bacnet.device_id_offset": "60000"})
        assert status == 200 and "Saved: bacnet.device_id_offset." in page
        assert "not in use until the gateway restarts: bacnet.device_id_offset" in page
        async with client.get("/events") as reply:
            assert "change settings: bacnet.device_id_offset" in await reply.text()
    assert tomllib.loads(settings_file(site).read_text()) == {"bacnet": {"device_id_offset": 60000}}
    assert site.gateway.config.bacnet.device_id_offset == 50000  # running as before, until a restart
    assert load_config(site.gateway.config.source).bacnet.device_id_offset == 60000
    [entry] = [e for e in audit(site) if e["action"] == "change setting"]
    assert (entry["key"], entry["outcome"], entry["detail"], entry["client"]) == (
        "bacnet.device_id_offset",
        "done",
        "50000 -> 60000",  # the value it had, the site file's or the default
        "127.0.0.1",
    )
    assert entry["session"] != "-"


async def test_a_refused_value_is_shown_with_the_message_check_config_gives_and_nothing_is_written(
    web_site, tmp_path
) -> None:
    site = await web_site(from_file=True)
    client = await site.logged_in()
    async with client:
        status, page = await post(client, "/settings", {**BACNET_FORM, "bacnet.device_id_offset": "4194100"})
        assert status == 400 and "Not saved" in page
        status, other = await post(client, "/settings", {"snmp.trap_rate": "many"})
    bad = tmp_path / "bad.toml"
    bad.write_text('[bacnet]\ndevice_id_offset = 4194100\n[snmp]\ntrap_rate = "many"\n')
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(bad)], capture_output=True, text=True, timeout=60
    )
    lines = [line.strip() for line in checked.stderr.splitlines() if " = " in line]
    assert lines == [
        "bacnet.device_id_offset = 4194100: allowed an integer 0-4194056 (offset + 247 <= 4194303)",
        'snmp.trap_rate = "many": allowed an integer 1-1000',
    ]
    assert lines[0] in page and lines[1] in other
    assert not settings_file(site).exists()
    assert [e["outcome"] for e in audit(site) if e["action"] == "change setting"] == ["refused: invalid value"] * 2


async def test_a_key_no_form_offers_is_refused_and_audited_even_when_posted(web_site) -> None:
    site = await web_site(from_file=True)
    client = await site.logged_in()
    async with client:
        status, page = await post(client, "/settings", {"web.allow": "192.0.2.66", "snmp.trap_rate": "20"})
    assert status == 400 and "web.allow" in page and "a key the running gateway may change" in page
    assert not settings_file(site).exists()
    assert ("web.allow", "refused: not settable") in [(e["key"], e["outcome"]) for e in audit(site)]


async def test_a_restart_must_find_its_faces_addresses_on_this_board(web_site) -> None:
    site = await web_site(from_file=True)
    client = await site.logged_in()
    async with client:
        status, page = await post(client, "/settings", {"snmp.enabled": "true", "snmp.address": "192.0.2.55"})
    assert status == 400 and 'snmp.address = "192.0.2.55": allowed an address of this board' in page
    assert not settings_file(site).exists()


async def test_secrets_are_never_shown_and_a_field_left_empty_keeps_one(web_site) -> None:
    site = await web_site(from_file=True, sections={"snmp": {"read_community": "s3cret-read"}})
    client = await site.logged_in()
    async with client:
        async with client.get("/settings") as reply:
            assert "s3cret-read" not in await reply.text()
        form = {"snmp.read_community": "", "snmp.write_community": "n3w-write", "snmp.trap_rate": "10"}
        status, page = await post(client, "/settings", form)
        assert status == 200 and "Saved: snmp.write_community." in page and "n3w-write" not in page
        status, page = await post(client, "/settings", {"snmp.write_community": "", "clear:snmp.write_community": "1"})
        assert status == 200 and "Saved: snmp.write_community." in page, re.findall(r"(?:Saved|Not saved)[^<]*", page)
    config = load_config(site.gateway.config.source)
    assert (config.snmp.read_community, config.snmp.write_community) == ("s3cret-read", None)  # SET off again
    assert "n3w-write" not in (settings_file(site).parent / AUDIT_FILE).read_text()


async def test_the_configuration_downloads_without_secrets_unless_asked_and_uploads_back(web_site) -> None:
    site = await web_site(from_file=True, sections={"snmp": {"read_community": "s3cret-read"}})
    client = await site.logged_in()
    async with client:
        async with client.get("/settings/download") as reply:
            assert reply.headers["content-disposition"] == 'attachment; filename="gateway.toml"'
            text = await reply.text()
        assert "s3cret-read" not in text and "snmp.read_community" in text
        async with client.get("/settings/download?secrets=1") as reply:
            assert 'read_community = "s3cret-read"' in await reply.text()
        status, page = await upload(client, "/settings/upload", file=text.encode())
        assert status == 200 and "Saved: nothing: every value is as it was." in page
        changed = text.replace("device_id_offset = 50000", "device_id_offset = 61000")
        status, page = await upload(client, "/settings/upload", file=changed.encode())
        assert status == 200 and "Saved: bacnet.device_id_offset." in page
        assert load_config(site.gateway.config.source).bacnet.device_id_offset == 61000
        for bad, message in (
            (changed.replace(f"port = {site.port}", "port = 1"), "web.port = 1: allowed"),  # the site's file's
            (b"\xff\xfe not text", "codec can't decode"),
            ("[snmp\n", "not valid TOML"),
        ):
            status, page = await upload(
                client, "/settings/upload", file=bad if isinstance(bad, bytes) else bad.encode()
            )
            assert status == 400 and message in page, message
    assert load_config(site.gateway.config.source).bacnet.device_id_offset == 61000  # nothing else replaced
    actions = [e["action"] for e in audit(site)]
    assert "download the configuration with secrets" in actions and "download the configuration" in actions
    refused = [e["outcome"] for e in audit(site) if e["action"] == "upload a configuration"]
    assert len(refused) == 3 and all(outcome.startswith("refused: ") for outcome in refused)


async def test_a_bdt_upload_is_checked_as_the_bacnet_face_reads_it_and_kept_at_a_fixed_name(web_site) -> None:
    site = await web_site(from_file=True)
    port = site.gateway.config.bacnet.port
    kept = site.gateway.config.gateway.state_file.parent / UPLOADED_BDT
    client = await site.logged_in()
    async with client:
        bbmd = {**BACNET_FORM, "bacnet.bbmd": "true", "bacnet.enabled": "true"}
        status, page = await post(client, "/settings", bbmd)
        assert status == 400 and "bdt file" in page and "cannot read it" in page  # no table: would not start
        status, page = await upload(client, "/settings/bdt", file=b"10.0.0.9,47808,255.255.255.255\n")
        assert status == 400 and "this gateway" in page  # its own line missing
        status, page = await upload(client, "/settings/bdt", file=b"// ok\n127.0.0.1,99999,255.255.255.255\n")
        assert status == 400 and "line 2" in page
        assert not kept.exists()
        table = f"// this gateway\n127.0.0.1,{port},255.255.255.255\n10.0.0.9,47808,255.255.255.255\n".encode()
        status, page = await upload(client, "/settings/bdt", file=table)
        assert status == 200 and "upload the bdt" in page and f"{kept} (uploaded here)" in page
        status, page = await post(client, "/settings", bbmd)
        assert status == 200, re.findall(r"<li>[^<]*", page)
    assert kept.read_bytes() == table and kept.stat().st_mode & 0o777 == 0o600
    assert load_config(site.gateway.config.source).bacnet.bdt_file == kept


def pair(folder: Path, name: str) -> tuple[bytes, bytes]:
    folder.mkdir(exist_ok=True)
    cert, key = folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    write_self_signed(cert, key, IPv4Address("127.0.0.1"))
    return cert.read_bytes(), key.read_bytes()


async def test_a_certificate_and_its_key_replace_the_self_signed_pair_once_they_load_together(
    web_site, tmp_path
) -> None:
    site = await web_site(from_file=True)
    folder = site.gateway.config.gateway.state_file.parent
    cert, key = pair(tmp_path / "pairs", "a")
    other_cert, _ = pair(tmp_path / "pairs", "b")
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    before = (folder / CERT_NAME).read_bytes()
    client = await site.logged_in()
    async with client:
        for certificate, private, why in (
            (other_cert, key, "do not load together"),
            (cert, encrypted, "do not load together"),
            (b"not a certificate", key, "do not load together"),
        ):
            status, page = await upload(client, "/settings/certificate", certificate=certificate, key=private)
            assert status == 400 and why in page
            assert (folder / CERT_NAME).read_bytes() == before
        status, page = await upload(client, "/settings/certificate", certificate=cert, key=key)
        assert status == 200 and "upload the certificate and key" in page
    assert (folder / CERT_NAME).read_bytes() == cert and (folder / KEY_NAME).read_bytes() == key
    assert (folder / KEY_NAME).stat().st_mode & 0o777 == 0o600
    outcomes = [e["outcome"][:8] for e in audit(site) if e["action"].startswith("upload the certificate")]
    assert outcomes == ["refused:"] * 3 + ["done"]


async def test_the_settings_before_the_last_change_are_taken_back(web_site) -> None:
    site = await web_site(from_file=True)
    client = await site.logged_in()
    async with client:
        await post(client, "/settings", {"snmp.trap_rate": "20"})
        status, page = await post(client, "/settings", {"snmp.trap_rate": "30"})
        assert "Take back the settings before the last change" in page
        status, page = await post(client, "/settings/revert", {})
        assert status == 200 and "Saved: the settings before the last change." in page
    assert load_config(site.gateway.config.source).snmp.trap_rate == 20


async def test_without_a_configuration_file_the_page_says_so_and_nothing_is_written(web_site) -> None:
    site = await web_site()  # a configuration made in code, as the demo's was
    client = await site.logged_in()
    async with client:
        async with client.get("/settings") as reply:
            assert "started without a configuration file" in await reply.text()
        status, _ = await post(client, "/settings", {"snmp.trap_rate": "20"})
        assert status == 409
        async with client.post("/settings", data={"csrf": "forged", "snmp.trap_rate": "20"}) as reply:
            assert reply.status == 403


async def test_circuit_names_are_saved_from_their_form_and_a_bad_one_is_refused_with_why(web_site) -> None:
    site = await web_site(from_file=True)
    client = await site.logged_in()
    async with client:
        csrf = await csrf_of(client, "/nodes/1/names")
        names = {f"n{c}": "" for c in range(1, 47)}
        async with client.post(
            "/actions/names", data={"csrf": csrf, "address": "1", **names, "n7": "Rack A12 PDU A", "n43": "Mains L1"}
        ) as reply:
            assert reply.status == 200 and "saved" in await reply.text()
        assert site.gateway.nodes.circuit_names(1) == {7: "Rack A12 PDU A", 43: "Mains L1"}
        async with client.post("/actions/names", data={"csrf": csrf, "address": "1", "n8": "x" * 41}) as reply:
            assert reply.status == 400 and "a name of 1-40 characters" in await reply.text()
        async with client.get("/nodes/1/names") as reply:
            assert 'name="n7" id="n7" value="Rack A12 PDU A"' in await reply.text()
    assert site.gateway.nodes.circuit_names(1) == {7: "Rack A12 PDU A", 43: "Mains L1"}
