"""The ``bcpm-gateway`` command: run, demo, discover, check-config, simulate, set-password, snmp-user,
export-ede, doctor."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import structlog

from gateway import service, unused  # noqa: F401  # unused: before the libraries
from gateway.audit import AUDIT_FILE, AuditLog
from gateway.bacnet import device_plan, forgotten
from gateway.bacnet.bdt import load_bdt
from gateway.bacnet.doctor import check_once
from gateway.bacnet.ede import ede_text
from gateway.bus import Bus, BusError, LineSettings
from gateway.bus.line import PARITIES
from gateway.config import (
    AUTH_KEY_OCTETS,
    BAUDRATES,
    MIN_PASSPHRASE,
    PRIV_KEY_OCTETS,
    Config,
    SnmpUser,
    default_config,
    defaults_to_change_warning,
    load_config,
    parse_config,
    read_toml,
    readable_secrets_warning,
    settings_file,
    uploaded_bdt,
)
from gateway.config_file import overridden_keys, set_site_keys
from gateway.cpu import CpuBudget
from gateway.errors import GatewayError
from gateway.logging import configure_logging
from gateway.modbus import UNIT_ADDRESSES
from gateway.nodes.discovery import Found, boards, scan
from gateway.nodes.line import line_candidates
from gateway.pointmap import load
from gateway.privileges import NoSuchUser, drop_root
from gateway.sim import cli as sim_cli
from gateway.state import StateStore
from gateway.web.auth import MIN_PASSWORD, hash_password


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args) or 0)
    except GatewayError as error:
        print(f"bcpm-gateway: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bcpm-gateway", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway as a service")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.add_argument(
        "--user",
        help=f"started as root, serve as this user (default {service.USER}; without that user, stay root and warn)",
    )
    run.set_defaults(command=_run)

    demo = commands.add_parser("demo", help="run the gateway against the built-in simulated BCPM, on loopback")
    demo.add_argument(
        "--boards",
        type=int,
        default=1,
        choices=range(1, 124),
        metavar="N",
        help="simulated boards (each answers at two addresses; default 1)",
    )
    demo.add_argument("--config", type=Path, help="TOML file overriding the demo's settings")
    sim_cli.add_load_argument(demo, default="datacenter")
    demo.set_defaults(command=_demo)

    discover = commands.add_parser("discover", help="scan a bus once and print what answers")
    discover.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB0")
    discover.add_argument(
        "--baudrate",
        default="19200",
        choices=("auto", *map(str, BAUDRATES)),
        help="auto: try the rates and parities a BCPM offers until meters answer",
    )
    discover.add_argument("--parity", default="N", choices=PARITIES, help="ignored with --baudrate auto")
    discover.add_argument("--stopbits", type=int, default=1, choices=(1, 2))
    every = f"{UNIT_ADDRESSES[0]}-{UNIT_ADDRESSES[-1]}"
    discover.add_argument("--range", dest="scan", default=every, help=f"addresses to scan, e.g. {every} or 1-10,20")
    discover.add_argument(
        "--timeout",
        type=float,
        default=0.015,
        help="seconds a meter gets to start answering, beyond the wire time (default 0.015)",
    )
    discover.add_argument("--json", action="store_true", help="print JSON instead of a table")
    discover.set_defaults(command=_discover)

    forget = commands.add_parser("forget", help="remove meter nodes from the state file (gateway stopped)")
    forget.add_argument("--config", type=Path, required=True, help="TOML configuration file (names the state file)")
    forget.add_argument("addresses", type=int, nargs="+", metavar="ADDR", help="Modbus addresses of the nodes")
    forget.set_defaults(command=_forget)

    check = commands.add_parser("check-config", help="validate a configuration file and the files it names")
    check.add_argument("file", type=Path)
    check.set_defaults(command=_check_config)

    simulate = commands.add_parser("simulate", help="run the built-in BCPM simulator behind a virtual serial line")
    sim_cli.add_arguments(simulate)
    simulate.set_defaults(command=sim_cli.run)

    for name, helped in (
        ("install-service", "install the gateway as a systemd service (as root)"),
        ("uninstall-service", "remove the systemd service and its user; keep config and state"),
    ):
        installer = commands.add_parser(name, help=helped)
        installer.add_argument(
            "--root",
            type=Path,
            default=Path("/"),
            metavar="DIR",
            help="install into another root folder, e.g. an image being prepared (default /)",
        )
        installer.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
        installer.set_defaults(command=_service, install=name == "install-service")

    doctor = commands.add_parser("doctor", help="look for another user of the gateway's BACnet network or device IDs")
    doctor.add_argument(
        "--config", type=Path, required=True, help="TOML configuration file (its state file names the meters)"
    )
    doctor.set_defaults(command=_doctor)

    password = commands.add_parser("set-password", help="set the web administrator's password (user admin)")
    password.add_argument("--config", type=Path, required=True, help="TOML configuration file to write the hash into")
    password.set_defaults(command=_set_password)

    user = commands.add_parser(
        "snmp-user", help="write an SNMPv3 user's keys, localized for the agent's engine, into the config"
    )
    user.add_argument("--config", type=Path, required=True, help="TOML configuration file to write the user into")
    user.add_argument("name", help="the user's name (1-32 letters, digits, _ or -)")
    user.add_argument(
        "--auth", choices=tuple(AUTH_KEY_OCTETS), help="authentication protocol (default: as set, or sha256)"
    )
    user.add_argument(
        "--priv", choices=(*PRIV_KEY_OCTETS, "none"), help="privacy protocol (default: as set, or aes128)"
    )
    user.add_argument("--access", choices=("read-only", "read-write"), help="(default: as set, or read-only)")
    user.set_defaults(command=_snmp_user)

    ede = commands.add_parser("export-ede", help="write the EDE point list of every BACnet device and object")
    ede.add_argument(
        "--config", type=Path, required=True, help="TOML configuration file (its state file names the meters)"
    )
    ede.add_argument("--output", type=Path, help="file to write (default: standard output)")
    ede.add_argument("--project", default="BCPM gateway", help="PROJECT_NAME in the file (default: BCPM gateway)")
    ede.set_defaults(command=_export_ede)
    return parser


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(config.log.level, config.log.format)
    for warning in (readable_secrets_warning(args.config), defaults_to_change_warning(config)):
        if warning:
            structlog.get_logger(__name__).warning("config", detail=warning)
    _without_unused_ciphers(config)
    from gateway import app  # the faces and their libraries load for the commands that serve

    _serve_as(args.user, config.gateway.state_file.parent)

    # A restart (BACnet ReinitializeDevice) reads the file again. The faces' loop leaves the bus its CPU.
    budget = CpuBudget()
    with asyncio.Runner(loop_factory=budget.loop) as runner:
        runner.run(app.serve(lambda: load_config(args.config), budget))
    return 0


def _serve_as(user: str | None, state_folder: Path) -> None:
    """Started as root: become the service user (or `user`), keeping only the right to bind
    ports below 1024. Without the default user (never installed), stay root and say so."""
    try:
        if drop_root(user or service.USER, state_folder):
            structlog.get_logger(__name__).info("serving as", user=user or service.USER)
    except NoSuchUser as error:
        if user is not None:
            raise
        structlog.get_logger(__name__).warning("running as root", detail=str(error))


def _demo(args: argparse.Namespace) -> int:
    load = sim_cli.load_argument(args.load, seed=None)
    try:  # the demo's own defaults have no SNMPv3 user; the file, if any, may add some
        _without_unused_ciphers(parse_config(read_toml(args.config)) if args.config else default_config())
    except GatewayError:
        pass  # the demo says what is wrong with the file
    from gateway import demo

    budget = CpuBudget()
    with asyncio.Runner(loop_factory=budget.loop) as runner:
        runner.run(demo.run_demo(args.boards, args.config, load, budget))
    return 0


def _without_unused_ciphers(config: Config) -> None:
    """Keep `cryptography` out of a serving gateway whose SNMPv3 users (if any) have no privacy:
    only SNMPv3 privacy needs it, and pysnmp goes without it as when it is not installed (6.5 MB
    resident saved; `gateway.unused` says how). The web face's self-signed certificate is made by a
    child process."""
    if not any(user.priv for user in config.snmp.users):
        sys.modules.setdefault("cryptography", None)  # type: ignore[arg-type]  # None: "not importable"


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    StateStore(config.gateway.state_file).load()
    if config.bacnet.enabled and config.bacnet.bbmd:
        load_bdt(config.bacnet)
    port_warnings = []
    if not Path(config.serial.port).exists():
        port_warnings.append(
            f"serial.port = {config.serial.port!r} does not exist (yet): the gateway serves the known "
            "meters as offline and opens the port when it appears"
        )
    if config.upstream.mode != "off" and not Path(config.upstream.port).exists():
        port_warnings.append(
            f"upstream.port = {config.upstream.port!r} does not exist (yet): the gateway opens it when it appears"
        )
    overridden = overridden_keys(args.file)
    changed_warning = (
        f"{settings_file(config)} (changed on the running gateway) sets {', '.join(overridden)} over this file"
        if overridden
        else None
    )
    uploaded = uploaded_bdt(config)
    bdt_warning = (
        f"bacnet.bdt_file: {uploaded} (uploaded on the running gateway) is used instead of this file's"
        if config.bacnet.bdt_file == uploaded
        else None
    )
    for warning in (
        *config.warnings,
        readable_secrets_warning(args.file),
        defaults_to_change_warning(config),
        *port_warnings,
        changed_warning,
        bdt_warning,
    ):
        if warning:
            print(f"warning: {warning}")
    print(f"{args.file}: ok")
    return 0


def _service(args: argparse.Namespace) -> int:
    if not args.dry_run:
        service.require_root()
    root = args.root.resolve()
    steps = service.install_steps(root, service.installed_command()) if args.install else service.uninstall_steps(root)
    service.carry_out(steps, args.dry_run, print)
    if not steps:
        print("nothing to do: " + ("the service is installed" if args.install else "the service is not installed"))
    if args.install and root == Path("/"):
        print(f"start it now and at every boot: systemctl enable --now {service.UNIT}")
    return 0


def _forget(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = StateStore(config.gateway.state_file)
    with store.held():
        state = store.load()
        unknown = sorted(set(args.addresses) - set(state.profiles))
        if unknown:
            known = ", ".join(map(str, state.profiles)) or "none"
            raise GatewayError(
                f"{config.gateway.state_file}: no node known at {', '.join(map(str, unknown))} "
                f"(known: {known}); nothing changed"
            )
        state = forgotten(state, args.addresses)  # their BACnet devices go too
        store.save(state)
    print(
        f"forgot {', '.join(map(str, sorted(set(args.addresses))))}; known now: "
        f"{', '.join(map(str, state.profiles)) or 'none'}"
    )
    return 0


def _set_password(args: argparse.Namespace) -> int:
    """Ask for the password (twice on a terminal; one line from a pipe) and keep only its hash."""
    path: Path = args.config
    config = load_config(path)  # a file the gateway would refuse is not edited
    password = _secret("New password for admin: ", "password", MIN_PASSWORD)
    audit = AuditLog(config.gateway.state_file.parent / AUDIT_FILE)
    set_site_keys(path, [("web", "password_hash", hash_password(password))], audit)
    print(f"{path}: web.password_hash set; restart the gateway to use it")
    return 0


_PASSPHRASE = ("passphrase", MIN_PASSPHRASE, " (RFC 3414)")


def _snmp_user(args: argparse.Namespace) -> int:
    """Ask for the user's passphrases and keep only its keys, localized for the agent's engine: the
    configured engine ID, else the one the gateway made (state file), else a new one, set in the
    file (localized keys hold only for it)."""
    from gateway.snmp.engine import new_engine_id  # pysnmp: only this command needs it
    from gateway.snmp.usm import localized_keys

    path: Path = args.config
    config = load_config(path)  # a file the gateway would refuse is not edited
    name: str = args.name
    known = {user.name: user for user in config.snmp.users}.get(name, SnmpUser(name=name))
    auth = args.auth or known.auth
    priv = known.priv if args.priv is None else None if args.priv == "none" else args.priv
    saved = StateStore(config.gateway.state_file).load().snmp_engine
    engine_id = config.snmp.engine_id or (saved.id if saved is not None else new_engine_id())
    user = replace(
        known,
        auth=auth,
        priv=priv,
        auth_passphrase=_secret(f"Authentication passphrase for {name}: ", *_PASSPHRASE),
        priv_passphrase=_secret(f"Privacy passphrase for {name}: ", *_PASSPHRASE) if priv else None,
    )
    auth_key, priv_key = localized_keys(user, engine_id)
    section = f"snmp.users.{name}"
    changes = [("snmp", "engine_id", f"0x{engine_id.hex()}")] if config.snmp.engine_id is None else []
    changes += [
        (section, key, value)
        for key, value in reversed(  # each new key goes under the table's header: the last first
            (
                ("auth", auth),
                ("auth_key", f"0x{auth_key.hex()}"),
                ("auth_passphrase", None),
                ("priv", priv or "none"),
                ("priv_key", None if priv_key is None else f"0x{priv_key.hex()}"),
                ("priv_passphrase", None),
                ("level", "authPriv" if priv else "authNoPriv"),
                ("access", args.access or known.access),
            )
        )
    ]
    set_site_keys(path, changes, AuditLog(config.gateway.state_file.parent / AUDIT_FILE))
    print(
        f"{path}: snmp.users.{name} keys written, localized for engine ID 0x{engine_id.hex()} (snmp.engine_id); "
        "restart the gateway to use them"
    )
    return 0


def _secret(prompt: str, what: str, shortest: int, why: str = "") -> str:
    """A password or passphrase: asked twice on a terminal, one line from a pipe."""
    if sys.stdin.isatty():
        secret = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != secret:
            raise GatewayError(f"the two {what}s differ; nothing changed")
    else:
        secret = sys.stdin.readline().rstrip("\n")
    if len(secret) < shortest:
        raise GatewayError(f"a {what} of at least {shortest} characters{why}, please; nothing changed")
    return secret


def _export_ede(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    state = StateStore(config.gateway.state_file).load()
    if not state.profiles:
        raise GatewayError(f"{config.gateway.state_file}: no meters known yet; run the gateway once in discovery mode")
    text = ede_text(device_plan(config.bacnet, state, load()), args.project)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8", newline="")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Exit status 1 when a conflict was found."""
    config = load_config(args.config)
    configure_logging("warning", "console")
    state = StateStore(config.gateway.state_file).load()
    plan = device_plan(config.bacnet, state, load())
    conflicts = asyncio.run(check_once(config.bacnet, plan))
    for conflict in sorted(conflicts, key=str):
        print(f"conflict: {conflict}")
    if not conflicts:
        print(
            f"no conflict: nobody else routes network {plan.router.network} or has device IDs "
            f"{', '.join(str(i) for i in sorted({plan.router.instance, *(n.instance for n in plan.nodes)}))}"
        )
    return 1 if conflicts else 0


def _discover(args: argparse.Namespace) -> int:
    configure_logging("error", "console")  # the result says it all; what fails is raised
    # The scan range is checked by the same rule as the config file's serial.scan.
    addresses = parse_config({"serial": {"scan": args.scan}}).serial.scan
    lines = (
        line_candidates(LineSettings(port=args.port, stopbits=args.stopbits))
        if args.baudrate == "auto"
        else [LineSettings(port=args.port, baudrate=int(args.baudrate), parity=args.parity, stopbits=args.stopbits)]
    )
    shown = sys.stderr.isatty() and not args.json  # progress on a terminal only
    found, line = asyncio.run(_scan(lines, addresses, args.timeout, shown))
    print(json.dumps(_as_json(found, line), indent=2) if args.json else _as_table(found, line))
    return 0


async def _scan(
    lines: Sequence[LineSettings], addresses: Sequence[int], timeout: float, shown: bool
) -> tuple[list[Found], LineSettings]:
    """The first line settings at which anything answers, and what answered; the last tried if none.

    Settings the port refuses are skipped; if it refuses them all, that is the error.
    """
    from tqdm import tqdm  # 3 MB resident: only this command shows progress

    found: list[Found] = []
    refused: list[BusError] = []
    with tqdm(total=len(lines) * len(addresses), unit="address", disable=not shown, leave=False) as progress:
        for line in lines:
            progress.set_description(f"{line.baudrate} 8{line.parity}{line.stopbits}")
            answered = 0

            def probed(result: Found | None) -> None:
                nonlocal answered
                answered += result is not None
                progress.update()
                progress.set_postfix(found=answered)

            try:
                async with Bus(line) as bus:
                    found = await scan(bus, addresses, timeout, probed=probed)
            except BusError as error:
                refused.append(error)
                progress.update(len(addresses))
                continue
            if found:
                break
    if len(refused) == len(lines):
        raise GatewayError(str(refused[0]))
    return found, line


def _board_of(found: list[Found]) -> dict[int, list[int]]:
    return {
        address: addresses
        for addresses in boards(f.profile for f in found if f.profile).values()
        for address in addresses
    }


def _as_json(found: list[Found], line: LineSettings) -> list[dict[str, object]]:
    board_of = _board_of(found)
    rows = []
    for item in found:
        row: dict[str, object] = {
            "address": item.address,
            "bcpm": item.is_bcpm,
            "detail": item.detail,
            "baudrate": line.baudrate,
            "parity": line.parity,
        }
        if item.profile is not None:
            p = item.profile
            row.update(
                model=p.model,
                serial=f"0x{p.serial:08X}",
                device_id=p.device_id,
                firmware={"rs": p.firmware_rs, "os": p.firmware_os},
                board=board_of.get(item.address, [item.address]),
                panel=p.panel,
            )
        rows.append(row)
    return rows


def _as_table(found: list[Found], line: LineSettings) -> str:
    if not found:
        return "nothing answered"
    board_of = _board_of(found)
    lines = [
        f"{line.port}: {line.baudrate} baud, 8{line.parity}{line.stopbits}",
        f"{'ADDR':>4}  {'MODEL':5}  {'SERIAL':10}  {'FIRMWARE':15}  BOARD",
    ]
    for item in found:
        if item.profile is None:
            lines.append(f"{item.address:>4}  {'-':5}  {'-':10}  {'-':15}  not a BCPM, left alone ({item.detail})")
            continue
        p = item.profile
        board = board_of.get(item.address, [item.address])
        pairing = f"panel {p.panel} of board {','.join(map(str, board))}"
        lines.append(
            f"{item.address:>4}  {p.model:5}  0x{p.serial:08X}  RS {p.firmware_rs} OS {p.firmware_os:<6}  {pairing}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
