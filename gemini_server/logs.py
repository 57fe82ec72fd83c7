"""Log records with the request id, written as text or (LOG_FORMAT=json) one JSON object per line."""

import json
import logging
from datetime import UTC, datetime

from gemini_server.request_id import request_id_current


class RequestIdLogFilter(logging.Filter):
    """Gives every record the id of the request or socket it was logged for (`-` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_current() or "-"
        return True


def _request_id(record: logging.LogRecord) -> str | None:
    value = getattr(record, "request_id", None)
    if value is None:
        value = request_id_current()
    return None if value in (None, "-") else value


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, requestId and exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "requestId": _request_id(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
