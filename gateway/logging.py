"""Structured logs for the whole process: structlog events and library records alike.

    configure_logging(level="info", fmt="auto")
    log = get_logger(__name__)
    log.info("node_online", node=3, model="A")

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

__all__ = ["DropReport", "LibraryErrorFilter", "configure_logging", "get_logger"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("auto", "json", "console")
# Chatty at INFO/DEBUG; their warnings still matter.
LIBRARY_LOGGERS = ("bacpypes3", "pysnmp", "pymodbus", "asyncio")


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
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderers = [
            # plain_traceback, not the rich default: rich tracebacks show locals too.
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
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


class DropReport:
    """Inputs a face threw away as malformed: counted, and said in the log at most once a minute.

    Any peer can send garbage; a log line (or a traceback) per datagram would let it fill the
    journal. ``drop()`` counts; every ``every`` seconds one warning says how many and the last why.
    """

    def __init__(self, what: str, every: float = 60.0) -> None:
        self.what = what
        self.every = every
        self.dropped = 0
        self._reported_at: float | None = None
        self._log = get_logger("gateway.drops")

    def drop(self, source: str, error: str) -> None:
        self.dropped += 1
        now = time.monotonic()
        if self._reported_at is None or now - self._reported_at >= self.every:
            self._reported_at = now
            self._log.warning(f"{self.what} dropped", dropped=self.dropped, last_source=source, last_error=error)


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
