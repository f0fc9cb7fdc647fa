"""The ``vfu-virtio`` process's log: one stream (stderr), a level, and a format for people or for machines.

:func:`setup` (re)configures the root logger: ``level`` one of :data:`LEVELS` (any case), ``fmt`` one of
:data:`FORMATS`: ``text`` (``2026-11-30 12:00:00,123 INFO    vfu_virtio.server: client 1 attached``) or ``json``
(one object per line: ``{"time": "2026-11-30T12:00:00.123+00:00", "level": "INFO", "logger": "vfu_virtio.server",
"message": "client 1 attached"}``, plus ``"exception"`` with the formatted traceback when there is one).
What is logged at which level: ``debug`` one line per request (queue, request type, sizes, status) and libvfio-user's
own detail; ``info`` client attach and detach, driver resets, a final ``stopped`` line with the totals;
``warning`` every guest error with its reason (DEVICE_NEEDS_RESET) and refused requests of the transport.
"""
from __future__ import annotations

import datetime
import json
import logging
import sys

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
               .isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def level_number(level: str) -> int:
    """``logging.DEBUG`` ... for a name of :data:`LEVELS` in any case; ValueError otherwise."""
    name = level.lower()
    if name not in LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return getattr(logging, name.upper())


def setup(level: str = "info", fmt: str = "text") -> int:
    """Send every log record at ``level`` or above to stderr in format ``fmt`` (replacing an earlier setup);
    returns the level's number. ValueError for an unknown level or format."""
    number = level_number(level)
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=number, handlers=[handler], force=True)
    return number
