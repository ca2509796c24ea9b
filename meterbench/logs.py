"""Structured logging for services: one JSON object per line on stdout (journald keeps it as is).

`meterbench bench` run by systemd logs this way, so a bench PC's journal can be
searched by field (`journalctl -u meterbench-bench -o cat | jq 'select(.event=="point_stop")'`).
"""

from __future__ import annotations

import json
import logging
import sys
import time

__all__ = ["JsonFormatter", "configure_logging"]

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time (UTC ISO 8601), level, logger, message, and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(fmt: str = "text", level: str = "info", stream=None) -> None:
    """Log to ``stream`` (stdout) as 'text' (for people) or 'json' (for the journal and log shippers)."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("meterbench")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
