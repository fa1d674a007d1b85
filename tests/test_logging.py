"""Process-wide logging: one formatter for structlog events and library records."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway import app
from gateway.logging import LIBRARY_LOGGERS, PeerEvents, configure_logging, event_counts, get_logger, peer_events
from gateway.sim import SimulatedLine
from tests.support import eventually, gateway_config


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; give the next test what this one found."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    library_levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, library_level in library_levels.items():
        logging.getLogger(name).setLevel(library_level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_json_lines_carry_event_level_timestamp_and_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")

    get_logger("gateway.nodes").info("node online", node=3, model="A")

    [line] = json_lines(capsys)
    assert line["event"] == "node online"
    assert line["level"] == "info"
    assert str(line["timestamp"]).endswith("Z")
    assert (line["logger"], line["node"], line["model"]) == ("gateway.nodes", 3, "A")


def test_a_foreign_library_record_goes_through_the_same_json_formatter(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    structlog.contextvars.bind_contextvars(node=7)

    logging.getLogger("pymodbus").error("no response from %s", "unit 7")

    [line] = json_lines(capsys)
    assert line["event"] == "no response from unit 7"
    assert (line["level"], line["logger"], line["node"]) == ("error", "pymodbus", 7)
    assert "timestamp" in line


def test_auto_format_is_json_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "auto")

    get_logger("gateway").info("started")

    assert json_lines(capsys)[0]["event"] == "started"


def test_console_format_is_readable_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "console")

    get_logger("gateway").info("started", boards=2)

    output = capsys.readouterr().err
    assert "started" in output and "boards=2" in output
    assert not output.lstrip().startswith("{")
    assert "\x1b[" not in output, "no colour codes when stderr is not a terminal"


def raise_with_a_secret_in_a_local() -> None:
    write_community = "s3cr3t-community"
    raise RuntimeError(f"SET refused ({len(write_community)} characters)")


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize("logger_name", ["gateway.snmp", "pysnmp"])
def test_a_logged_exception_shows_the_traceback_but_not_local_variables(
    capsys: pytest.CaptureFixture[str], fmt: str, logger_name: str
) -> None:
    configure_logging("info", fmt)
    logger = get_logger(logger_name) if logger_name.startswith("gateway") else None

    try:
        raise_with_a_secret_in_a_local()
    except RuntimeError:
        if logger is not None:
            logger.exception("set_failed")
        else:
            logging.getLogger(logger_name).exception("set failed")

    output = capsys.readouterr().err
    assert "RuntimeError" in output
    assert "raise_with_a_secret_in_a_local" in output
    assert "s3cr3t-community" not in output
    if fmt == "json":
        [line] = [json.loads(text) for text in output.splitlines()]
        assert line["exception"][0]["exc_type"] == "RuntimeError"


def test_configuring_twice_installs_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = len(root.handlers)

    configure_logging("info", "json")
    configure_logging("info", "json")
    get_logger("gateway").info("once")

    assert len(root.handlers) == before + 1
    assert [line["event"] for line in json_lines(capsys)] == ["once"]


def test_library_loggers_are_held_at_warning_unless_the_level_is_debug(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    logging.getLogger("bacpypes3.ipv4").info("hidden")
    logging.getLogger("asyncio").warning("shown")
    assert [line["event"] for line in json_lines(capsys)] == ["shown"]

    configure_logging("debug", "json")
    logging.getLogger("bacpypes3.ipv4").debug("now shown")
    assert [line["event"] for line in json_lines(capsys)] == ["now shown"]


def test_pymodbus_decode_warnings_stay_out_of_the_log_unless_debugging(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    logging.getLogger("pymodbus.logging").warning("Unable to decode frame")
    assert json_lines(capsys) == []
    configure_logging("debug", "json")
    logging.getLogger("pymodbus.logging").warning("Unable to decode frame")
    assert [line["event"] for line in json_lines(capsys)] == ["Unable to decode frame"]


def test_the_level_filters_our_events_and_library_records_alike(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("error", "json")

    get_logger("gateway").warning("hidden")
    logging.getLogger("pymodbus").warning("hidden too")
    get_logger("gateway").error("shown")

    assert [line["event"] for line in json_lines(capsys)] == ["shown"]


def test_a_logger_made_before_configuration_follows_it(capsys: pytest.CaptureFixture[str]) -> None:
    early = get_logger("gateway.cli")
    early.info("before")
    capsys.readouterr()

    configure_logging("info", "json")
    early.info("after")

    assert [line["event"] for line in json_lines(capsys)] == ["after"]


def test_an_unknown_level_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="verbose"):
        configure_logging("verbose", "json")
    with pytest.raises(ValueError, match="xml"):
        configure_logging("info", "xml")


def test_a_class_of_peer_events_is_counted_and_logged_once_a_minute(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    events = PeerEvents("test time synchronizations", level="info")
    for second in range(500):
        events.count(f"192.0.2.{second % 250}:47808", f"time {second}")

    [line] = json_lines(capsys)
    assert (line["event"], line["level"], line["count"]) == ("test time synchronizations", "info", 1)
    assert event_counts()["test time synchronizations"] == 500
    assert peer_events("test time synchronizations") is events
    events.every = 0.0  # as if a minute had passed
    events.count("192.0.2.1:47808", "late")
    [line] = json_lines(capsys)
    assert (line["count"], line["last_source"], line["last_detail"]) == (501, "192.0.2.1:47808", "late")


def test_bacpypes3_warnings_and_errors_about_peer_input_are_counted_per_class_not_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    library = logging.getLogger("bacpypes3.app.Application")
    for _ in range(100):
        try:
            raise ValueError("deviceInstanceRangeLowLimit out of range")
        except ValueError as error:
            library.exception("test: reject exception processing unconfirmed request: %r", error)
    logging.getLogger("bacpypes3.netservice").warning("test: path error (1)")
    get_logger("gateway.bacnet").warning("ours are not")

    lines = json_lines(capsys)
    assert [line["event"] for line in lines] == [
        "bacpypes3.app.Application: test: reject exception processing unconfirmed request: %r",
        "bacpypes3.netservice: test: path error (1)",
        "ours are not",
    ]
    assert "exception" not in lines[0] and "out of range" in lines[0]["last_detail"]
    assert event_counts()["bacpypes3.app.Application: test: reject exception processing unconfirmed request: %r"] == 100

    configure_logging("debug", "json")  # debugging shows every record
    library.warning("now shown")
    assert [line["event"] for line in json_lines(capsys)] == ["now shown"]


def test_a_task_that_fails_inside_bacpypes3_is_counted_and_one_that_fails_in_our_code_is_logged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bacpypes3.pdu import Address

    configure_logging("info", "json")

    async def failing(make: Callable[[], object]) -> None:
        make()

    async def main() -> None:
        for make in (lambda: Address(object()), lambda: 1 / 0):  # bacpypes3 fails, then ours
            task = asyncio.get_running_loop().create_task(failing(make))
            await asyncio.sleep(0)
            del task  # never awaited: asyncio logs it when the task is collected
            gc.collect()

    asyncio.run(main())
    lines = json_lines(capsys)
    assert [line["event"].startswith("bacpypes3.pdu: ") for line in lines] == [True, False]
    assert "ZeroDivisionError" in json.dumps(lines[1])


async def test_the_status_line_carries_the_count_of_every_class_of_peer_events(
    make_line: Callable[..., SimulatedLine],
    start_gateway: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gateway = await start_gateway(gateway_config(make_line(1), tmp_path))
    peer_events("test status refusals").count("192.0.2.9", "too many")
    monkeypatch.setattr(app, "STATUS_EVERY", 0.05)
    with structlog.testing.capture_logs() as logs:
        reporting = asyncio.ensure_future(app._report_status(gateway))
        await eventually(lambda: any(entry["event"] == "status" for entry in logs), 10, "a status line")
        reporting.cancel()
    status = next(entry for entry in logs if entry["event"] == "status")
    assert status["peer_events"]["test status refusals"] == 1
    assert status["bus"]["transactions"] > 0  # the bus's counters as an object, each by name
    assert status["scan"]["passes"] == 1 and status["scan"]["last_finished"] is not None  # the search for meters
