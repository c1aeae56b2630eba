"""Structured logging with structlog: key=value on a console, JSON in production.

Every rendered line goes through :func:`hub.redact.redact_text`, whatever logged it
(the hub, uvicorn, paho, amqtt): a password in a URL or an API key never reaches the
log. Tracebacks are plain text without local variables: locals hold settings, keys
and payloads, and pages of them bury the one line that matters.
"""

from __future__ import annotations

import logging
import sys

import structlog

from hub.redact import redact_text
from hub.settings import LogSettings

#: Payloads quoted in logs are cut to this many bytes (field data can be anything).
LOG_PAYLOAD_BYTES = 200


def configure(settings: LogSettings) -> None:
    """Route stdlib and structlog records through one renderer."""
    renderer: structlog.types.Processor
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _RedactingFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in ("uvicorn.access", "httpx", "amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with secrets taken out of the finished line."""

    def format(self, record: logging.LogRecord) -> str:
        """The rendered record, redacted."""
        return redact_text(super().format(record))


def truncate(payload: bytes, limit: int = LOG_PAYLOAD_BYTES) -> str:
    """Printable, bounded rendering of a field payload for a log line."""
    text = payload[:limit].decode("utf-8", errors="backslashreplace")
    return text + ("…" if len(payload) > limit else "")


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger named after its module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
