"""Log lines that name their trace, span and flow; plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

from opentelemetry.trace import format_span_id, format_trace_id, get_current_span
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from choreokit.events import ConfigurationError, StrictSettings
from choreokit.tracing._context import handling
from choreokit.tracing._naming import flow_label

TRACE_ID = "trace_id"
SPAN_ID = "span_id"
CORRELATION_ID = "correlation_id"
_TRACEPARENT_LENGTH = 55  # 00-<32 hex>-<16 hex>-<2 hex>
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class LogFormat(StrEnum):
    """How log lines are written (``CHOREO_LOG_FORMAT``)."""

    TEXT = "text"
    """One human-readable line, trace and flow ids appended when known."""

    JSON = "json"
    """One JSON object per line, for a log pipeline (Loki, Elasticsearch, CloudWatch)."""


class LogSettings(StrictSettings):
    """``CHOREO_LOG_FORMAT`` [text]; another ``CHOREO_LOG_*`` variable than those is an error."""

    model_config = SettingsConfigDict(
        env_prefix="CHOREO_LOG_", frozen=True, extra="ignore", env_ignore_empty=True
    )

    known_elsewhere = frozenset({"CHOREO_LOG_LEVEL"})
    """``choreo --log-level``'s variable (the command line sets the level)."""

    format: LogFormat = LogFormat.TEXT


def _format_from_env() -> LogFormat:
    try:
        return LogSettings().format
    except ValidationError:
        accepted = ", ".join(f.value for f in LogFormat)
        raise ConfigurationError(f"CHOREO_LOG_FORMAT must be one of: {accepted}") from None


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id``, ``span_id`` and ``correlation_id`` to every record it sees.

    The ids come from the current span; when tracing is off, from the trace
    context of the record being handled, so the lines of one flow can still be
    found by trace id. The correlation id is that of the record being handled,
    unless the log call passed its own in ``extra``; either is written as its
    :func:`~choreokit.tracing.flow_label`, never as the id (the record key).
    Attach it to a handler (a logger's filters do not see its children's records).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate ``record``; never drops one."""
        trace_id = span_id = None
        span_context = get_current_span().get_span_context()
        envelope = handling.get()
        if span_context.is_valid:
            trace_id = format_trace_id(span_context.trace_id)
            span_id = format_span_id(span_context.span_id)
        elif envelope is not None and envelope.traceparent is not None:
            trace_id, span_id = _ids(envelope.traceparent)
        record.trace_id = trace_id
        record.span_id = span_id
        correlation_id = getattr(record, CORRELATION_ID, None)
        if correlation_id is None and envelope is not None:
            correlation_id = envelope.correlation_id
        # The id may be personal data (it is the record key): lines name the flow by its label.
        record.correlation_id = None if correlation_id is None else flow_label(str(correlation_id))
        return True


def _ids(traceparent: str) -> tuple[str | None, str | None]:
    parts = traceparent.split("-")
    if len(traceparent) != _TRACEPARENT_LENGTH or len(parts) != 4:  # noqa: PLR2004 - W3C format
        return None, None
    return parts[1], parts[2]


class TextFormatter(logging.Formatter):
    """The usual one-line format, with ``trace_id=… span_id=… correlation_id=…`` when known."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """Format ``record`` and append the ids it carries."""
        line = super().format(record)
        ids = " ".join(
            f"{key}={value}"
            for key in (TRACE_ID, SPAN_ID, CORRELATION_ID)
            if (value := getattr(record, key, None)) is not None
        )
        if not ids:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the ids
        return f"{head} {ids}{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service, ids, extras, exception.

    Args:
        service: The ``service`` field of every line (omitted when ``None``).
    """

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record``; values JSON cannot hold are written as their ``str``."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._service is not None:
            line["service"] = self._service
        for key in (TRACE_ID, SPAN_ID, CORRELATION_ID):
            line[key] = getattr(record, key, None)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(
    service: str | None = None,
    *,
    level: int | None = None,
    log_format: LogFormat | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the process's logs to ``stream`` (stderr) with trace and flow ids on every line.

    Replaces the root logger's handlers with one that carries a
    :class:`TraceContextFilter`, formatted as text or JSON per
    ``CHOREO_LOG_FORMAT`` (``text`` or ``json``) unless ``log_format`` is given.

    Args:
        service: Named on every JSON line.
        level: The root logger's level; left as it is when omitted.
        log_format: Overrides ``CHOREO_LOG_FORMAT``.
        stream: Where lines go (default: stderr).

    Returns:
        The handler installed.

    Raises:
        ConfigurationError: ``CHOREO_LOG_FORMAT`` holds an unknown format.
    """
    chosen = log_format or _format_from_env()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter(service) if chosen is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    if level is not None:
        root.setLevel(level)
    return handler
