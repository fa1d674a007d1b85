"""The TOML configuration: defaults, validation, error reporting, merging."""

from __future__ import annotations

from dataclasses import fields
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from gateway.config import (
    SECTIONS,
    UPLOADED_BDT,
    Config,
    SnmpUser,
    allowed_values,
    default_config,
    load_config,
    merge_config,
    parse_config,
    raw_settings,
)
from gateway.errors import ConfigError, ConfigProblem

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "gateway.toml"


def problems_of(data: dict[str, object]) -> dict[str, ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return {problem.key: problem for problem in caught.value.problems}


def test_the_example_config_file_loads_without_problems_or_warnings() -> None:
    config = load_config(EXAMPLE)

    assert config.warnings == ()
    assert config.bacnet.address == IPv4Interface("192.168.1.24/24")


def test_the_example_config_file_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    config = default_config()
    for section in ("gateway", "serial", "bacnet", "snmp", "modbus_tcp", "web", "log"):
        assert f"[{section}]" in text
        for key in type(getattr(config, section)).__dataclass_fields__:
            # a table of tables is shown by an example of one, commented out
            documented = f"\n{key} = " in text or f"\n# [{section}.{key}." in text
            assert documented, f"{section}.{key} is not in {EXAMPLE.name}"
    for key in SnmpUser.__dataclass_fields__:
        assert f"\n# {key} = " in text or key == "name", f"snmp.users.NAME.{key} is not in {EXAMPLE.name}"


def test_an_empty_file_gives_the_documented_defaults() -> None:
    config = parse_config({})

    assert config == default_config() == Config()
    assert config.gateway.operating_mode == "discovery"
    assert config.gateway.state_file == Path("/var/lib/bcpm-gateway/state.json")
    assert (config.serial.port, config.serial.baudrate) == ("/dev/ttyUSB0", 19200)
    assert (config.serial.parity, config.serial.stopbits, config.serial.timeout) == ("N", 1, 0.2)
    assert config.serial.scan == tuple(range(1, 248))
    assert config.serial.probe_timeout == 0.015
    assert config.serial.offline_after == 3
    assert config.bacnet.address == IPv4Interface("127.0.0.1/8")
    assert (config.bacnet.port, config.bacnet.device_id_offset) == (47808, 50000)
    assert (config.bacnet.network, config.bacnet.vendor_id) == (50, 133)
    assert config.bacnet.foreign_bbmd is None
    assert (config.snmp.port, config.snmp.read_community) == (161, "public")
    assert config.snmp.notify_hosts == ()
    assert config.snmp.max_response_varbinds == 128
    assert config.bacnet.max_built_objects == 2048
    assert (config.modbus_tcp.port, config.modbus_tcp.cache_max_age) == (502, 2.0)
    assert (config.log.level, config.log.format) == ("info", "auto")
    assert config.warnings == ()


def test_there_is_no_default_write_community_so_snmp_set_is_off() -> None:
    assert default_config().snmp.write_community is None
    assert load_config(EXAMPLE).snmp.write_community is None


def test_an_empty_write_community_means_set_is_off_and_a_given_one_is_kept() -> None:
    assert parse_config({"snmp": {"write_community": ""}}).snmp.write_community is None
    assert parse_config({"snmp": {"write_community": "private"}}).snmp.write_community == "private"


@pytest.mark.parametrize("network", [0, 65535, 70000, -1])
def test_an_out_of_range_bacnet_network_falls_back_to_5_with_a_warning(network: int) -> None:
    config = parse_config({"bacnet": {"network": network}})

    assert config.bacnet.network == 5
    assert len(config.warnings) == 1
    assert f"bacnet.network = {network}" in config.warnings[0]
    assert "using 5" in config.warnings[0]


@pytest.mark.parametrize("value", [0, 4097, -1, 20.0, True, "128"])
def test_a_getbulk_cap_outside_1_to_4096_is_refused_naming_key_value_and_range(value: object) -> None:
    problem = problems_of({"snmp": {"max_response_varbinds": value}})["snmp.max_response_varbinds"]

    assert (problem.value, problem.allowed) == (value, "an integer 1-4096")
    assert str(problem).startswith("snmp.max_response_varbinds = ")


@pytest.mark.parametrize("value", [1, 20, 4096])
def test_a_getbulk_cap_within_1_to_4096_is_kept(value: int) -> None:
    assert parse_config({"snmp": {"max_response_varbinds": value}}).snmp.max_response_varbinds == value


def test_snmp_allow_takes_addresses_and_networks_and_names_each_bad_entry() -> None:
    allow = parse_config({"snmp": {"allow": ["192.168.1.50", "10.0.0.0/8"]}}).snmp.allow
    assert [str(network) for network in allow] == ["192.168.1.50/32", "10.0.0.0/8"]
    problems = problems_of({"snmp": {"allow": ["10.0.0.1/8", "host", "10.0.0.0/33"]}})
    assert set(problems) == {"snmp.allow[0]", "snmp.allow[1]", "snmp.allow[2]"}  # host bits set, a name, no such mask
    assert problems_of({"snmp": {"allow": "10.0.0.0/8"}})["snmp.allow"].allowed.startswith("a list of")


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("rate_limit", 0, "an integer 1-1000000"),
        ("bulk_amplification", 0, "an integer 1-1000"),
        ("location", "x" * 256, "at most 255 printable ASCII characters"),
        ("contact", "Zoë, 2nd floor", "at most 255 printable ASCII characters"),
        ("name", 7, "at most 255 printable ASCII characters"),
    ],
)
def test_snmp_limits_and_system_strings_out_of_range_are_refused(key: str, value: object, allowed: str) -> None:
    assert problems_of({"snmp": {key: value}})[f"snmp.{key}"].allowed == allowed


@pytest.mark.parametrize("value", [0, 100001, 2.5, "2048"])
def test_a_built_object_cap_outside_1_to_100000_is_refused(value: object) -> None:
    problem = problems_of({"bacnet": {"max_built_objects": value}})["bacnet.max_built_objects"]

    assert (problem.value, problem.allowed) == (value, "an integer 1-100000")


@pytest.mark.parametrize("network", [1, 50, 65534])
def test_a_bacnet_network_in_range_is_kept_without_warning(network: int) -> None:
    config = parse_config({"bacnet": {"network": network}})

    assert (config.bacnet.network, config.warnings) == (network, ())


def test_the_ip_network_is_auto_by_default_or_a_number_other_than_the_virtual_network() -> None:
    assert parse_config({}).bacnet.ip_network is None
    assert parse_config({"bacnet": {"ip_network": "auto"}}).bacnet.ip_network is None
    assert parse_config({"bacnet": {"ip_network": 7}}).bacnet.ip_network == 7
    assert "bacnet.ip_network" in problems_of({"bacnet": {"ip_network": 50, "network": 50}})


def test_a_bacnet_network_that_is_not_an_integer_is_an_error() -> None:
    assert "bacnet.network" in problems_of({"bacnet": {"network": "50"}})


def test_a_file_with_several_mistakes_gives_one_error_naming_each_key_value_and_allowed_set(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        """
[serial]
baudrate = 12345
baud = 9600
timeout = "fast"

[bacnet]
device_id_offset = 4194100

[snmp]
read_community = "pub lic"
notify_hosts = ["192.168.1.50", "192.168.1.51:99999"]
"""
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    error = caught.value
    found = {problem.key: problem for problem in error.problems}
    assert list(found) == [
        "serial.baudrate",
        "serial.baud",
        "serial.timeout",
        "bacnet.device_id_offset",
        "snmp.read_community",
        "snmp.notify_hosts[1]",
    ]
    assert found["serial.baudrate"].value == 12345
    assert found["serial.baudrate"].allowed == '9600, 19200, 38400, 57600, 115200, "auto"'
    assert found["serial.baud"].value == 9600
    assert "baudrate" in found["serial.baud"].allowed
    assert found["serial.timeout"].value == "fast"
    assert found["serial.timeout"].allowed == "a number 0.01-5"
    assert found["bacnet.device_id_offset"].value == 4194100
    assert "0-4194056" in found["bacnet.device_id_offset"].allowed
    assert found["snmp.read_community"].value == "pub lic"
    assert "printable ASCII without spaces" in found["snmp.read_community"].allowed
    assert found["snmp.notify_hosts[1]"].value == "192.168.1.51:99999"
    assert "1-65535" in found["snmp.notify_hosts[1]"].allowed

    lines = str(error).splitlines()
    assert lines[0] == f"config file {path}:"
    assert lines[1] == 'serial.baudrate = 12345: allowed 9600, 19200, 38400, 57600, 115200, "auto"'
    assert 'serial.timeout = "fast": allowed a number 0.01-5' in lines
    assert len(lines) == 1 + 6


def test_an_unknown_key_names_the_keys_its_section_allows() -> None:
    problem = problems_of({"serial": {"baud": 9600}})["serial.baud"]

    assert problem.allowed.startswith("keys in [serial]: port, baudrate, parity, stopbits")


def test_an_unknown_section_names_the_sections_allowed() -> None:
    problem = problems_of({"serail": {"port": "/dev/ttyS0"}})["serail"]

    assert "[serial]" in problem.allowed and "[modbus_tcp]" in problem.allowed


def test_a_section_that_is_not_a_table_is_an_error() -> None:
    assert problems_of({"log": "debug"})["log"].allowed == "a table [log]"


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("bacnet", "enabled", 1),
        ("bacnet", "enabled", "yes"),
        ("bacnet", "port", True),
        ("bacnet", "port", 47808.0),
        ("serial", "stopbits", True),
        ("serial", "retries", 1.5),
        ("serial", "poll_interval", False),
        ("serial", "poll_interval", float("nan")),
        ("serial", "parity", "n"),
        ("modbus_tcp", "max_connections", 0),
        ("snmp", "trap_community", ""),
        ("snmp", "read_community", "x" * 33),
        ("snmp", "write_community", "caf\u00e9"),
        ("snmp", "address", "localhost"),
        ("bacnet", "reinit_password", "x" * 21),
        ("bacnet", "read_only", "yes"),
        ("bacnet", "ip_network", 0),
        ("bacnet", "ip_network", "learned"),
        ("gateway", "operating_mode", "auto"),
        ("log", "level", "verbose"),
        ("web", "port", 0),
        ("web", "session_minutes", 0),
        ("web", "password_hash", "s3cret"),
        ("web", "max_connections", 2000),
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused(section: str, key: str, value: object) -> None:
    problem = problems_of({section: {key: value}})[f"{section}.{key}"]

    assert problem.value is value


def test_floats_accept_integers() -> None:
    config = parse_config({"serial": {"timeout": 1, "poll_interval": 2}})

    assert config.serial.timeout == 1.0 and isinstance(config.serial.timeout, float)
    assert config.serial.poll_interval == 2.0


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('[serial]\nport = "/dev/ttyUSB0"\nbaudrate = = 19200\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(path) in str(caught.value)
    assert "not valid TOML" in str(caught.value)
    assert "line 3" in str(caught.value)


def test_a_missing_config_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError, match="absent.toml"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "addresses"),
    [
        ("1-247", tuple(range(1, 248))),
        ("3", (3,)),
        ("1-5,9", (1, 2, 3, 4, 5, 9)),
        ("20-22, 1-2", (1, 2, 20, 21, 22)),
        ("4-6,5-7", (4, 5, 6, 7)),
        ("247", (247,)),
    ],
)
def test_scan_ranges_parse_into_sorted_addresses(text: str, addresses: tuple[int, ...]) -> None:
    assert parse_config({"serial": {"scan": text}}).serial.scan == addresses


@pytest.mark.parametrize("text", ["0-3", "5-2", "x", "", "1-248", "1,,2", "1-", "-5", "\u0663", 5])
def test_bad_scan_ranges_are_refused(text: object) -> None:
    problem = problems_of({"serial": {"scan": text}})["serial.scan"]

    assert "1-247" in problem.allowed


def test_the_bacnet_address_needs_an_explicit_prefix() -> None:
    assert "bacnet.address" in problems_of({"bacnet": {"address": "192.168.1.24"}})
    config = parse_config({"bacnet": {"address": "10.1.2.3/16"}})
    assert config.bacnet.address.network.broadcast_address.exploded == "10.1.255.255"


def test_a_foreign_bbmd_is_parsed_into_host_and_port() -> None:
    config = parse_config({"bacnet": {"foreign_bbmd": "10.0.0.1:47809"}})

    assert config.bacnet.foreign_bbmd == ("10.0.0.1", 47809)
    assert "bacnet.foreign_bbmd" in problems_of({"bacnet": {"foreign_bbmd": "10.0.0.1"}})


def test_a_bbmd_cannot_also_register_as_a_foreign_device() -> None:
    problems = problems_of({"bacnet": {"bbmd": True, "foreign_bbmd": "10.0.0.1:47808"}})

    assert "not both" in problems["bacnet.foreign_bbmd"].allowed


def test_notify_hosts_parse_into_host_and_port_with_port_162_by_default() -> None:
    config = parse_config({"snmp": {"notify_hosts": ["192.168.1.50", "192.168.1.51:10162"]}})

    assert config.snmp.notify_hosts == (("192.168.1.50", 162), ("192.168.1.51", 10162))


def test_every_bad_notify_host_is_named_by_its_index() -> None:
    problems = problems_of({"snmp": {"notify_hosts": ["1.2.3.4", "nms", "1.2.3.4:0", 7]}})

    assert list(problems) == [f"snmp.notify_hosts[{index}]" for index in (1, 2, 3)]
    assert problems["snmp.notify_hosts[1]"].value == "nms"


def test_a_config_problem_reads_as_key_value_and_what_is_allowed() -> None:
    problem = ConfigProblem("serial.parity", "X", '"N", "E", "O"')

    assert str(problem) == 'serial.parity = "X": allowed "N", "E", "O"'


def test_merge_config_lays_one_file_over_another_table_by_table() -> None:
    base = {"snmp": {"port": 1161, "read_community": "public"}, "serial": {"port": "/dev/pts/3"}}
    override = {"snmp": {"port": 2161, "notify_hosts": ["127.0.0.1"]}, "log": {"level": "debug"}}

    merged = merge_config(base, override)

    assert merged == {
        "snmp": {"port": 2161, "read_community": "public", "notify_hosts": ["127.0.0.1"]},
        "serial": {"port": "/dev/pts/3"},
        "log": {"level": "debug"},
    }
    merged["snmp"]["notify_hosts"].append("127.0.0.2")
    assert base["snmp"] == {"port": 1161, "read_community": "public"}
    assert override["snmp"]["notify_hosts"] == ["127.0.0.1"]
    assert parse_config(merged).snmp.port == 2161


def test_web_networks_parse_and_a_network_with_host_bits_is_refused_by_its_index() -> None:
    web = parse_config({"web": {"allow": ["10.1.0.0/16", "192.168.1.5"]}}).web
    assert [str(network) for network in web.allow] == ["10.1.0.0/16", "192.168.1.5/32"]
    assert web.metrics_allow == ()  # any host, by default
    problems = problems_of({"web": {"metrics_allow": ["10.0.0.0/8", "10.0.0.1/8"]}})
    assert list(problems) == ["web.metrics_allow[1]"]


def test_the_web_face_is_off_by_default_and_takes_both_certificate_files_or_neither() -> None:
    web = default_config().web
    assert (web.enabled, web.port, web.password_hash, web.tls_cert) == (False, 443, None, None)
    assert list(problems_of({"web": {"tls_cert": "/etc/cert.pem"}})) == ["web.tls_key"]
    assert list(problems_of({"web": {"tls_key": "/etc/key.pem"}})) == ["web.tls_cert"]


def test_the_baudrate_may_be_found_at_start() -> None:
    assert parse_config({"serial": {"baudrate": "auto"}}).serial.baudrate == "auto"
    with pytest.raises(ConfigError, match='serial.baudrate = "Auto": allowed 9600, .*, "auto"'):
        parse_config({"serial": {"baudrate": "Auto"}})
    with pytest.raises(ConfigError, match="serial.baudrate = true"):
        parse_config({"serial": {"baudrate": True}})


#: A value other than its default for keys of every kind of rule, as a site would write it.
CHANGED = {
    "gateway": {"operating_mode": "locked", "state_file": "/srv/state.json"},
    "serial": {"baudrate": "auto", "scan": "1-10,20,30-32", "rts_delay_after": 1.5, "stopbits": 2},
    "bacnet": {"address": "10.1.2.3/24", "ip_network": 7, "foreign_bbmd": "10.9.9.9:47809", "max_segments": 8},
    "snmp": {
        "write_community": "private",
        "notify_hosts": ["192.0.2.1:162", "192.0.2.2:1162"],
        "allow": ["10.0.0.0/8"],
    },
    "web": {"tls_cert": "/etc/c.pem", "tls_key": "/etc/k.pem", "metrics_allow": ["192.0.2.9"], "trend_hours": 6},
}


@pytest.mark.parametrize("raw", [{}, CHANGED], ids=["defaults", "changed"])
def test_every_key_written_back_as_toml_reads_the_same_settings(raw: dict[str, dict[str, object]]) -> None:
    config = parse_config(raw)
    written = raw_settings(config)
    assert parse_config(written) == config
    assert all(set(written[name]) == {f.name for f in fields(cls)} for name, cls in SECTIONS.items())
    for section, keys in raw.items():
        for key, value in keys.items():
            assert written[section][key] == value, f"{section}.{key}"  # as the site wrote it


def test_every_key_says_what_it_takes_in_the_words_of_its_errors() -> None:
    for name, cls in SECTIONS.items():
        for spec in fields(cls):
            assert allowed_values(name, spec.name), f"{name}.{spec.name}"
    assert allowed_values("bacnet", "device_id_offset") == "an integer 0-4194056 (offset + 247 <= 4194303)"


def test_a_bdt_uploaded_on_the_running_gateway_is_read_instead_of_the_site_files(tmp_path: Path) -> None:
    site = tmp_path / "gateway.toml"
    site.write_text(f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n[bacnet]\nbdt_file = "/etc/x/bdt.ini"\n')
    assert load_config(site).bacnet.bdt_file == Path("/etc/x/bdt.ini")
    (tmp_path / UPLOADED_BDT).write_text("127.0.0.1,47808,255.255.255.255\n")
    config = load_config(site)
    assert config.bacnet.bdt_file == tmp_path / UPLOADED_BDT and config.source == site
