"""The demo's login (admin / demo) holds on loopback only."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.demo import DEMO_PASSWORD_HASH, demo_config
from tests.web.conftest import PASSWORD_HASH


@pytest.mark.parametrize(
    "user_file, expected",
    [
        (None, DEMO_PASSWORD_HASH),
        ("[snmp]\nport = 1162\n", DEMO_PASSWORD_HASH),
        ('[web]\naddress = "127.0.0.2"\n', DEMO_PASSWORD_HASH),
        ('[web]\naddress = "0.0.0.0"\n', None),  # off loopback: nobody logs in with "demo"
        (f'[web]\naddress = "0.0.0.0"\npassword_hash = "{PASSWORD_HASH}"\n', PASSWORD_HASH),
    ],
    ids=["no file", "another face", "another loopback address", "off loopback", "off loopback, own hash"],
)
def test_the_demo_password_stays_on_loopback(tmp_path: Path, user_file: str | None, expected: str | None) -> None:
    path = None
    if user_file is not None:
        path = tmp_path / "demo.toml"
        path.write_text(user_file)
    assert demo_config(1, tmp_path, path).web.password_hash == expected
