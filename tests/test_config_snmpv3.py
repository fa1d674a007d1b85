"""[snmp]'s SNMPv3 keys: users, their protocols and keys, v2c on or off, the engine ID; every
problem names its key, and no passphrase or key is ever shown."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import defaults_to_change_warning, parse_config
from gateway.errors import ConfigError, ConfigProblem

PASSPHRASES = {"auth_passphrase": "correct horse", "priv_passphrase": "battery staple"}
ENGINE_ID = "0x80000ef9050102030405060708"


def problems_of(snmp: dict[str, Any]) -> dict[str, ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"snmp": snmp})
    for secret in (*PASSPHRASES.values(), "short", "11" * 20):  # never in a message
        assert secret not in str(caught.value)
    return {problem.key: problem for problem in caught.value.problems}


def user(**keys: Any) -> dict[str, Any]:
    return {"users": {"nms": {**PASSPHRASES, **keys}}}


def test_a_user_with_passphrases_takes_sha256_aes128_authpriv_read_only_and_traps_by_default() -> None:
    snmp = parse_config({"snmp": user()}).snmp
    [nms] = snmp.users
    assert (nms.name, nms.auth, nms.priv, nms.level, nms.access) == ("nms", "sha256", "aes128", "authPriv", "read-only")
    assert (nms.notify_hosts, nms.notify_type, nms.localized) == ((), "trap", False)
    assert snmp.v2c and snmp.engine_id is None and (snmp.inform_timeout, snmp.inform_retries) == (1.0, 2)
    assert snmp.versions == "v2c, v3: nms (sha256, aes128, authPriv, read-only)"
    assert "correct horse" not in repr(snmp) and "battery staple" not in str(snmp.users)


def test_a_user_without_privacy_is_served_at_authnopriv() -> None:
    [mon] = parse_config({"snmp": {"users": {"mon": {"priv": "none", "auth_passphrase": "12345678"}}}}).snmp.users
    assert (mon.priv, mon.level, mon.priv_passphrase) == (None, "authNoPriv", None)


def test_v3_users_beside_v2c_warn_naming_the_key_and_v2c_off_does_not() -> None:
    assert parse_config({"snmp": user()}).warnings == (
        "snmp.v2c = true beside SNMPv3 users: v2c communities travel in clear text; "
        "set snmp.v2c = false once every manager speaks SNMPv3",
    )
    assert parse_config({"snmp": {**user(), "v2c": False}}).warnings == ()
    assert parse_config({"snmp": {**user(), "enabled": False}}).warnings == ()


@pytest.mark.parametrize(
    ("keys", "key", "allowed"),
    [
        ({"auth": "md5"}, "auth", "MD5 is refused"),
        ({"auth": "SHA-256"}, "auth", '"sha1", "sha224", "sha256", "sha384", "sha512"'),
        ({"priv": "des"}, "priv", "DES is refused"),
        ({"priv": "3des"}, "priv", "3DES is refused"),
        ({"priv": "aes"}, "priv", 'spelled "aes128"'),
        ({"auth_passphrase": "short"}, "auth_passphrase", "at least 8 characters (RFC 3414)"),
        ({"priv_passphrase": "seven77"}, "priv_passphrase", "at least 8 characters (RFC 3414)"),
        ({"level": "noAuthNoPriv"}, "level", '"authNoPriv", "authPriv"'),
        ({"level": "authNoPriv"}, "level", '"authPriv" with a privacy protocol'),
        ({"access": "write"}, "access", '"read-only", "read-write"'),
        ({"notify_type": "trap2"}, "notify_type", '"trap", "inform"'),
        ({"notify_hosts": ["nms.example"]}, "notify_hosts[0]", '"ipv4" or "ipv4:port"'),
        ({"auth_key": "0x" + "11" * 32}, "auth_passphrase", "one of auth_passphrase"),
        ({"auth_pasphrase": "correct horse"}, "auth_pasphrase", "keys in [snmp.users.nms]"),
    ],
)
def test_each_bad_user_key_is_named_with_what_is_allowed(keys: dict[str, Any], key: str, allowed: str) -> None:
    problems = problems_of({"engine_id": ENGINE_ID, **user(**keys)})
    assert allowed in problems[f"snmp.users.nms.{key}"].allowed, problems


@pytest.mark.parametrize(
    ("auth", "octets"), [("sha1", 20), ("sha224", 28), ("sha256", 32), ("sha384", 48), ("sha512", 64)]
)
def test_a_localized_key_has_the_size_of_its_protocol(auth: str, octets: int) -> None:
    keys = {"auth": auth, "priv": "aes256", "priv_key": "0x" + "22" * 32}
    good = parse_config(
        {"snmp": {"engine_id": ENGINE_ID, "users": {"nms": {**keys, "auth_key": "0x" + "11" * octets}}}}
    )
    assert good.snmp.users[0].auth_key == bytes([0x11]) * octets and good.snmp.users[0].localized
    problem = problems_of({"engine_id": ENGINE_ID, "users": {"nms": {**keys, "auth_key": "0x" + "11" * (octets - 1)}}})
    assert problem["snmp.users.nms.auth_key"].allowed.startswith(f'{octets} octets for auth = "{auth}"')


@pytest.mark.parametrize(("priv", "octets"), [("aes128", 16), ("aes192", 24), ("aes256", 32)])
def test_a_localized_privacy_key_has_the_size_of_its_cipher(priv: str, octets: int) -> None:
    keys = {"auth_key": "0x" + "11" * 32, "priv": priv}
    problem = problems_of({"engine_id": ENGINE_ID, "users": {"nms": {**keys, "priv_key": "0x" + "22" * 20}}})
    assert problem["snmp.users.nms.priv_key"].allowed.startswith(f'{octets} octets for priv = "{priv}"')
    assert (
        problems_of({"engine_id": ENGINE_ID, "users": {"nms": {**keys, "priv_key": "0x12"}}})[
            "snmp.users.nms.priv_key"
        ].value
        == "(4 characters, not shown)"
    )


def test_localized_keys_need_the_engine_id_they_were_localized_for() -> None:
    keys = {"auth_key": "0x" + "11" * 32, "priv_key": "0x" + "22" * 16}
    problem = problems_of({"users": {"nms": keys}})["snmp.users.nms.auth_key"]
    assert problem.allowed.startswith("a localized key only with snmp.engine_id set")


def test_informs_need_passphrases_to_be_keyed_for_the_receivers_engine() -> None:
    keys = {"auth_key": "0x" + "11" * 32, "priv_key": "0x" + "22" * 16, "notify_type": "inform"}
    problem = problems_of({"engine_id": ENGINE_ID, "users": {"nms": keys}})["snmp.users.nms.notify_type"]
    assert "passphrases" in problem.allowed


def test_keys_for_no_privacy_are_refused() -> None:
    problem = problems_of(user(priv="none"))["snmp.users.nms.priv_passphrase"]
    assert problem.allowed == 'none with priv = "none"' and problem.value == "(not shown)"


def test_user_names_are_short_plain_words() -> None:
    problems = problems_of({"users": {"ops team": PASSPHRASES, "x" * 33: PASSPHRASES, "ok": "not a table"}})
    assert set(problems) == {"snmp.users.ops team", f"snmp.users.{'x' * 33}", "snmp.users.ok"}
    assert problems_of({"users": ["nms"]})["snmp.users"].allowed.startswith("tables [snmp.users.NAME]")


@pytest.mark.parametrize("engine_id", ["0x0000000000", "0xffffffffff", "0x80000ef9", "80000ef90501", "0x" + "ab" * 33])
def test_an_engine_id_is_5_to_32_octets_not_all_zeros_nor_all_ones(engine_id: str) -> None:
    assert "SNMP engine ID" in problems_of({"engine_id": engine_id})["snmp.engine_id"].allowed


def test_a_configured_engine_id_is_kept_as_octets() -> None:
    assert parse_config({"snmp": {"engine_id": ENGINE_ID}}).snmp.engine_id == bytes.fromhex(ENGINE_ID[2:])


def test_v2c_off_needs_a_user_and_no_v2c_receivers() -> None:
    assert "with SNMPv3 users" in problems_of({"v2c": False})["snmp.v2c"].allowed
    problems = problems_of({"v2c": False, "notify_hosts": ["192.168.1.50"], **user()})
    assert set(problems) == {"snmp.notify_hosts"} and "snmp.v2c = false" in problems["snmp.notify_hosts"].allowed
    snmp = parse_config({"snmp": {"v2c": False, **user()}}).snmp
    assert snmp.versions == "v3: nms (sha256, aes128, authPriv, read-only)"


@pytest.mark.parametrize(("key", "value"), [("inform_timeout", 0.05), ("inform_timeout", 61), ("inform_retries", 11)])
def test_inform_timing_out_of_range_is_refused(key: str, value: object) -> None:
    assert f"snmp.{key}" in problems_of({key: value})


def test_the_public_read_community_is_not_named_while_v2c_is_off() -> None:
    assert "snmp.read_community" in (defaults_to_change_warning(parse_config({"snmp": user()})) or "")
    off = parse_config({"snmp": {"v2c": False, **user()}})
    assert "snmp" not in (defaults_to_change_warning(off) or "")
