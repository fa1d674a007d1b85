"""Structured logs for the whole process: structlog events and library records alike.

    configure_logging(level="info", fmt="auto")
    log = get_logger(__name__)
    log.info("node online", node=3, model="A")

One stdlib root handler on stderr with structlog's ProcessorFormatter renders both our events
and the records of foreign stdlib loggers (bacpypes3, pysnmp, pymodbus, asyncio), so the
journal sees a single format: JSON lines under systemd or a pipe, readable lines on a terminal.
Context bound with ``structlog.contextvars.bind_contextvars(node=7)`` tags both kinds.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import structlog

__all__ = [
    "DropReport",
    "LibraryErrorFilter",
    "LibraryNoise",
    "PeerEvents",
    "configure_logging",
    "event_counts",
    "get_logger",
    "peer_events",
]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("auto", "json", "console")
# Chatty at INFO/DEBUG; their warnings still matter.
LIBRARY_LOGGERS = ("bacpypes3", "pysnmp", "pymodbus", "asyncio")
# Libraries whose warnings and errors are about what peers send: counted per class, see LibraryNoise.
QUIET_LIBRARIES = ("bacpypes3",)


class _GatewayHandler(logging.StreamHandler[TextIO]):
    """The root handler this module installs; marked by its class so a second call replaces it."""


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Route every log record of the process to stderr in one format. Safe to call again.

    `fmt` "json" or "console" forces a renderer; "auto" picks JSON unless stderr is a terminal.
    Library loggers are held at WARNING unless `level` is "debug".
    """
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: allowed {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: allowed {', '.join(FORMATS)}")
    threshold = LEVELS[level]
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())

    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Safe to call again: only loggers first used after this call are cached, and the
        # chain above never changes; the handler and renderer live in stdlib logging.
        cache_logger_on_first_use=True,
    )

    renderers: list[structlog.typing.Processor]
    if as_json:
        renderers = [
            # The default dict tracebacks carry frame locals, which can hold SNMP communities.
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderers = [
            # plain_traceback, not the rich default: rich tracebacks show locals too.
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
        ]
    handler = _GatewayHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    # Records propagate to root handlers whatever the root level, so the handler filters too.
    handler.setLevel(threshold)
    if level != "debug":
        handler.addFilter(LibraryNoise(*QUIET_LIBRARIES))

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(threshold)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level == "debug" else logging.WARNING)
    if level != "debug":
        # pymodbus is only our codec: it warns about every frame it cannot decode, and the gateway
        # handles (and counts) each of those itself. A flood of bad frames must not flood the log.
        logging.getLogger("pymodbus").setLevel(logging.ERROR)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named `name` (use the module's ``__name__``)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


class PeerEvents:
    """One class of event that any peer can cause as often as it likes, unauthenticated (a
    malformed datagram, a time synchronization, a registration, a refusal by a rate limit):
    counted, and said in the log at most once a minute.

    A log line (or a traceback) per event would let one host fill the journal. ``count()`` counts;
    the first event, and then one every ``every`` seconds at most, logs one line that says how
    many so far and the last source and detail. Every class counts in `event_counts()`, which the
    status line shows, so what came after the last report is seen there.
    """

    def __init__(self, what: str, every: float = 60.0, level: str = "warning") -> None:
        self.what = what
        self.every = every
        self.level = level
        self.counted = 0
        self.reported = 0  # lines logged
        self._reported_at: float | None = None
        self._log = get_logger("gateway.events")
        _CLASSES[what] = self

    def count(self, source: str, detail: str) -> None:
        self.counted += 1
        now = time.monotonic()
        if self._reported_at is None or now - self._reported_at >= self.every:
            self._reported_at = now
            self.reported += 1
            getattr(self._log, self.level)(self.what, count=self.counted, last_source=source, last_detail=detail)


_CLASSES: dict[str, PeerEvents] = {}


def peer_events(what: str, level: str = "warning") -> PeerEvents:
    """The process's counter of one class of events (made on first use)."""
    return _CLASSES[what] if what in _CLASSES else PeerEvents(what, level=level)


def event_counts() -> dict[str, int]:
    """How many events of each class that happened at all (the latest counter of each class)."""
    return {what: events.counted for what, events in _CLASSES.items() if events.counted}


class DropReport(PeerEvents):
    """Inputs a face threw away as malformed."""

    @property
    def dropped(self) -> int:
        return self.counted

    def drop(self, source: str, error: str) -> None:
        self.count(source, error)


class LibraryErrorFilter(logging.Filter):
    """Turns a library's per-input error records (often with a traceback) into `DropReport` counts.

    For libraries that catch a malformed input themselves but log it at ERROR each time.
    """

    def __init__(self, report: DropReport, *messages: str) -> None:
        super().__init__()
        self.report = report
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str) or not record.msg.startswith(self.messages):
            return True
        error = record.exc_info[1] if record.exc_info else None
        self.report.drop("?", repr(error) if error else record.getMessage())
        return False


class LibraryNoise(logging.Filter):
    """Counts, instead of logging one by one, what a protocol library warns about or fails on.

    bacpypes3 logs a warning, or an error with a traceback, for many kinds of peer input it does
    not like (an invalid Who-Is range, an unknown route, a segment out of order), once per
    datagram, and some of its tasks fail on such input where nobody awaits them (asyncio then
    logs "Task exception was never retrieved"). On the root handler this turns each such record
    into a `PeerEvents` count of its class (the library's logger and message, or the function
    the exception was raised in), so the journal hears of each class at most once a minute. An
    exception raised in the gateway's own code is still logged in full.
    """

    def __init__(self, *libraries: str) -> None:
        super().__init__()
        self.libraries = libraries
        self.prefixes = tuple(f"{library}." for library in libraries)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        error = record.exc_info[1] if record.exc_info else None
        if self._ours(record.name):
            what = f"{record.name}: {record.msg!s}"
        elif (raised := _raised_in(error)) is not None and self._ours(raised[0]):
            what = f"{raised[0]}: {type(error).__name__} in {raised[1]}"
        else:
            return True
        peer_events(what).count("?", repr(error) if error else record.getMessage())
        return False

    def _ours(self, module: str) -> bool:
        return module in self.libraries or module.startswith(self.prefixes)


def _raised_in(error: BaseException | None) -> tuple[str, str] | None:
    """(module, function) of the frame that raised `error`."""
    traceback = error.__traceback__ if error is not None else None
    if traceback is None:
        return None
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    frame = traceback.tb_frame
    return str(frame.f_globals.get("__name__")), frame.f_code.co_name
