"""Structured logs: one JSON object per line, each carrying the id of the request it belongs to.

Log lines never carry secrets: settings hold them as SecretStr, and nothing here formats request
bodies or headers.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

from broadcaster.settings import LoggingSettings

# The id of the HTTP request being served, set by the request-id middleware.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(settings: LoggingSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestIdFilter())
    if settings.format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{message}{request_id}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Our own middleware logs each request once, with its id; aiohttp's would repeat it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Alembic narrates every connection; `broadcaster.storage.migrate` logs the upgrades that run.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request URL, and a Telegram bot's URL carries its token: keep it quiet
    # (the Telegram adapter also redacts the token from that logger).
    logging.getLogger("httpx").setLevel(logging.WARNING)
