"""`bcpm-gateway simulate`: serve simulated BCPM boards on a virtual serial line until stopped.

    bcpm-gateway simulate --link /tmp/ttyBCPM --addresses 1,5 --model B --crc-errors 0.01
    bcpm-gateway simulate --link /tmp/ttyBCPM --load office        # circuits that draw current

Addresses group into boards: sorted, each address not yet covered starts a board there, which
also serves the next address ("1,2" is one board; "1,5" are boards 1/2 and 5/6).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from gateway.modbus import UNIT_ADDRESSES
from gateway.pointmap import MODELS
from gateway.sim.load import PROFILES, SWING_EVERY, Load, LoadFileError, load_named

MAX_ADDRESS = UNIT_ADDRESSES[-1]


def board_addresses(addresses: Sequence[int]) -> list[int]:
    """The primary address of each board needed to serve `addresses`.

    >>> board_addresses([5, 1, 2])
    [1, 5]
    """
    primaries: list[int] = []
    for address in sorted(set(addresses)):
        if not 1 <= address <= MAX_ADDRESS:
            raise ValueError(f"address {address} is outside the Modbus range 1-{MAX_ADDRESS}")
        if primaries and address <= primaries[-1] + 1:
            continue
        if address == MAX_ADDRESS:
            raise ValueError(f"a board at {MAX_ADDRESS} would need address {MAX_ADDRESS + 1} for its second panel")
        primaries.append(address)
    return primaries


def _boards_argument(text: str) -> list[int]:
    try:
        addresses = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of addresses") from None
    if not addresses:
        raise argparse.ArgumentTypeError("give at least one address")
    try:
        return board_addresses(addresses)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a probability within 0-1")
    return value


def _milliseconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} ms is negative")
    return value / 1000


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _address_seconds(text: str) -> tuple[int, float]:
    address, _, seconds = text.partition(":")
    try:
        parsed = int(address), float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ADDRESS:SECONDS, e.g. 2:5") from None
    if parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"{seconds} s must be positive")
    return parsed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--link", required=True, metavar="PATH", help="symlink to create to the virtual serial port")
    parser.add_argument(
        "--addresses",
        dest="boards",
        type=_boards_argument,
        default=[1],
        metavar="LIST",
        help="Modbus addresses to serve, e.g. 1,5 (boards serve N and N+1; default 1)",
    )
    parser.add_argument("--model", choices=MODELS, default="A", help="meter model of every board (default A)")
    parser.add_argument("--baudrate", type=_positive_int, default=19200, metavar="N", help="default 19200")
    parser.add_argument("--parity", choices=("N", "E", "O"), default="N", help="default N")
    parser.add_argument("--turnaround", type=_milliseconds, default=0.005, metavar="MS", help="think time (default 5)")
    parser.add_argument("--no-wire-time", dest="emulate_wire", action="store_false", help="reply at pty speed")
    parser.add_argument(
        "--echo",
        action="store_true",
        help="the master hears its own requests, as through a transceiver that does not mute its receiver",
    )
    parser.add_argument("--crc-errors", type=_probability, default=0.0, metavar="P", help="share with a bad CRC")
    parser.add_argument("--silence", type=_probability, default=0.0, metavar="P", help="share of replies dropped")
    parser.add_argument("--exceptions", type=_probability, default=0.0, metavar="P", help="share answered exception 04")
    parser.add_argument("--slow", type=_probability, default=0.0, metavar="P", help="share of replies sent late")
    parser.add_argument(
        "--slow-delay", type=_milliseconds, default=1.0, metavar="MS", help="lateness of slow replies (default 1000)"
    )
    parser.add_argument(
        "--flap",
        type=_address_seconds,
        action="append",
        default=[],
        metavar="ADDR:SECONDS",
        help="the node vanishes and returns every SECONDS (repeatable)",
    )
    parser.add_argument(
        "--absent",
        type=_address_seconds,
        action="append",
        default=[],
        metavar="ADDR:SECONDS",
        help="the node is silent for its first SECONDS, like a meter still booting (repeatable)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed for the injected faults and the load (default: random faults, load seed 0)",
    )
    add_load_argument(parser, default="none")


def add_load_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """`--load`, shared with `demo`."""
    parser.add_argument(
        "--load",
        default=default,
        metavar="PROFILE",
        help=f"what the circuits draw: {', '.join(PROFILES)}, none (every current 0) or a CSV "
        f"file of channel,amps lines (default {default})",
    )


def load_argument(name: str, seed: int | None) -> Load | None:
    """The load `--load` names; LoadFileError when it names a file that is not a load file."""
    return None if name == "none" else load_named(name, seed or 0)


def run(args: argparse.Namespace) -> int:
    # The simulator itself loads here, not with the options: `bcpm-gateway run` has those too.
    from gateway.sim.faults import Faults
    from gateway.sim.line import SimulatedLine
    from gateway.sim.meter import Board

    try:
        load = load_argument(args.load, args.seed)
    except LoadFileError as error:
        print(f"simulate: {error}", file=sys.stderr)
        return 2
    boards = [Board(address, model=args.model, baudrate=args.baudrate, load=load) for address in args.boards]
    served = {address for board in boards for address in board.addresses}
    for option, values in (("--flap", args.flap), ("--absent", args.absent)):
        for address, _ in values:
            if address not in served:
                print(f"simulate: {option} {address}: no board serves address {address}", file=sys.stderr)
                return 2
    line = SimulatedLine(
        boards,
        baudrate=args.baudrate,
        parity=args.parity,
        turnaround=args.turnaround,
        emulate_wire=args.emulate_wire,
        link=args.link,
        seed=args.seed,
        echo=args.echo,
    )
    line.faults = Faults(
        silence=args.silence,
        crc_error=args.crc_errors,
        exception=args.exceptions,
        slow=args.slow,
        slow_delay=args.slow_delay,
    )
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            line.start()
        except OSError as err:
            print(f"simulate: {err}", file=sys.stderr)
            return 1
        for address, period in args.flap:
            line.flap(address, period)
        for address, seconds in args.absent:
            line.absent_for(address, seconds)
        listing = ", ".join(f"{a}/{b}" for a, b in (board.addresses for board in boards))
        swing = next((board.load.swing for board in boards if board.load and board.load.swing), None)
        swinging = (
            ""
            if swing is None
            else (
                f"; channel {swing[1]} of address {swing[0]} goes over its high "
                f"threshold every {SWING_EVERY / 60:g} minutes"
            )
        )
        print(
            f"simulating model {args.model} boards at addresses {listing} on {args.link} -> {line.path} "
            f"({args.baudrate} baud, 8{args.parity}1), load {args.load}{swinging}",
            flush=True,
        )
        stop.wait()
    finally:
        line.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
