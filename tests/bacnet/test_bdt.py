"""bdt.ini, the BCPME's broadcast distribution table file: what is read, what is refused and
how it is told, and `check-config` checking it."""

from __future__ import annotations

import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from gateway.bacnet.bdt import BdtError, parse_bdt, read_bdt

EXAMPLE = Path(__file__).resolve().parents[2] / "bdt.ini.example"
OWN = (IPv4Address("10.0.1.5"), 47808)


def problems(text: str) -> tuple[str, ...]:
    with pytest.raises(BdtError) as refused:
        parse_bdt(text, OWN)
    return refused.value.problems


def test_the_example_file_is_a_valid_table_for_the_example_config() -> None:
    table = read_bdt(EXAMPLE, (IPv4Address("192.168.1.24"), 47808))
    assert [str(entry) for entry in table] == [
        "192.168.1.24:47808 mask 255.255.255.255",
        "10.20.0.5:47808 mask 255.255.255.255",
    ]


def test_the_bcpme_guides_sample_reads_as_two_two_hop_bbmds() -> None:
    text = (
        "// Bdt.ini\n// The format of this table must be (without the forward slashes - they are\n//\n"
        "//BBMD IP_Address , BBMD port , BBMD subnet Mask\n//\n"
        "147.26.116.217,47808,255.255.255.255\n172.16.17.198,47808,255.255.255.255\n"
    )
    table = parse_bdt(text, (IPv4Address("172.16.17.198"), 47808))
    assert [(str(e.address), e.port, str(e.mask)) for e in table] == [
        ("147.26.116.217", 47808, "255.255.255.255"),
        ("172.16.17.198", 47808, "255.255.255.255"),
    ]


def test_blank_lines_spaces_windows_line_ends_and_indented_comments_are_tolerated() -> None:
    text = (
        "\r\n  // indented comment\r\n\r\n 10.0.1.5 , 47808 , 255.255.255.255 \t\r\n"
        "\n10.0.2.1,47809,255.255.255.0   \n\n"
    )
    table = parse_bdt(text, OWN)
    assert [str(entry) for entry in table] == [
        "10.0.1.5:47808 mask 255.255.255.255",
        "10.0.2.1:47809 mask 255.255.255.0",
    ]


def test_a_file_without_this_gateways_line_is_an_error_not_a_guess() -> None:
    assert problems("10.0.2.1,47808,255.255.255.255\n") == (
        "no line for this gateway (10.0.1.5:47808, from bacnet.address and bacnet.port): "
        "list every BBMD of the network, this one included",
    )
    # The same address on another port is another BBMD.
    assert "no line for this gateway" in problems("10.0.1.5,47809,255.255.255.255\n")[0]
    assert "no line for this gateway" in problems("// only comments\n\n")[0]


def test_every_bad_line_is_reported_with_its_number_and_why() -> None:
    found = problems(
        "\n".join(
            [
                "// comment",
                "10.0.1.5,47808,255.255.255.255",
                "10.0.2.1 47808 255.255.255.255",
                "10.0.2.300,47808,255.255.255.255",
                "host.example,47808,255.255.255.255",
                "224.0.0.1,47808,255.255.255.255",
                "10.0.2.2,0,255.255.255.255",
                "10.0.2.3,bac0,255.255.255.255",
                "10.0.2.4,47808,255.0.255.0",
                "10.0.2.5,47808,0.0.0.0",
                "10.0.2.6,47808,24",
                "10.0.1.5,47808,255.255.255.0",
                "10.0.2.7,47808,255.255.255.255 // a trailing comment",
                "10.0.2.8,47808,255.255.255.255,",
            ]
        )
    )
    assert [problem.split(":")[0] for problem in found] == [f"line {n}" for n in range(3, 15)]
    assert "expected ip,port,mask (3 fields separated by commas), found 1" in found[0]
    assert "'10.0.2.300' is not an IPv4 address" in found[1]
    assert "'host.example' is not an IPv4 address" in found[2]
    assert "224.0.0.1 is not the address of one host" in found[3]
    assert "the port '0' is not a number 1-65535" in found[4]
    assert "the port 'bac0' is not a number 1-65535" in found[5]
    assert "the mask '255.0.255.0' is not a subnet mask" in found[6]
    assert "the mask '0.0.0.0' is not a subnet mask" in found[7]
    assert "the mask '24' is not a subnet mask" in found[8]
    assert found[9] == "line 12: 10.0.1.5:47808 is already on line 2"
    assert "is not a subnet mask" in found[10]
    assert "found 4 field(s)" in found[11]


def test_a_file_that_cannot_be_read_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(BdtError, match=f"bdt file {tmp_path / 'none.ini'}: cannot read it"):
        read_bdt(tmp_path / "none.ini", OWN)
    binary = tmp_path / "binary.ini"
    binary.write_bytes(b"\xff\xfe1\x000\x00")
    with pytest.raises(BdtError, match="is not UTF-8 text"):
        read_bdt(binary, OWN)
    bad = tmp_path / "bad.ini"
    bad.write_bytes(b"\xef\xbb\xbf10.0.1.5,47808,255.255.255.255\n10.0.2.1,47808\n")  # a BOM is fine
    with pytest.raises(BdtError) as refused:
        read_bdt(bad, OWN)
    assert str(refused.value).splitlines() == [
        f"bdt file {bad}:",
        "  line 2: '10.0.2.1,47808': expected ip,port,mask (3 fields separated by commas), found 2 field(s)",
    ]


def check_config(tmp_path: Path, bdt: str | None, *, bbmd: bool = True) -> subprocess.CompletedProcess[str]:
    bdt_file = tmp_path / "bdt.ini"
    if bdt is not None:
        bdt_file.write_text(bdt)
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nstate_file = "{tmp_path / "state.json"}"\n'
        f'[bacnet]\naddress = "10.0.1.5/24"\nbbmd = {str(bbmd).lower()}\nbdt_file = "{bdt_file}"\n'
    )
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(config)], capture_output=True, text=True, timeout=60
    )


def test_check_config_checks_the_bdt_file_of_a_bbmd(tmp_path: Path) -> None:
    good = check_config(tmp_path, "10.0.1.5,47808,255.255.255.255\n")
    assert good.returncode == 0, good.stderr
    bad = check_config(tmp_path, "10.0.1.5,47808,255.255.255.255\n10.0.2.1,47808,255.0.255.0\n")
    assert bad.returncode == 2
    assert f"bdt file {tmp_path / 'bdt.ini'}:" in bad.stderr and "line 2:" in bad.stderr
    assert "Traceback" not in bad.stderr
    (tmp_path / "bdt.ini").unlink()
    missing = check_config(tmp_path, None)
    assert missing.returncode == 2 and "cannot read it" in missing.stderr


def test_check_config_ignores_the_bdt_file_when_not_a_bbmd(tmp_path: Path) -> None:
    assert check_config(tmp_path, None, bbmd=False).returncode == 0
