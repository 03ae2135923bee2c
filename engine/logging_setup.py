"""JSON-lines logging for every ticktape process (supervisor and children).

One object per line, as the seed's archiver writes them, so ``jq``/DuckDB can
read the log: ``{"level", "time" (ISO UTC, microseconds), "message", "logger",
"process", ...extra fields}``. Lines go to stdout and to ``<log.dir>/<log.file>``
(opened in append mode by every process; one ``write`` per line keeps lines
whole).

Credentials never reach the log: extra fields whose names look like secrets
are masked, URL passwords (``scheme://user:pass@``) are masked, and the values
of the standard AWS secret variables (plus anything passed to
``register_secret``) are replaced wherever they appear.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticktape.engine.config import LogConfig

MASK = "***"
_SECRET_NAME = re.compile(
    r"secret|passw|token|credential|api[_-]?key|access[_-]?key|authorization|signature|private[_-]?key", re.I
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@")
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_secrets: set[str] = set()

# attributes every LogRecord has; anything else came in through ``extra=``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_OURS = "_ticktape_handler"


def register_secret(value: str | None) -> None:
    """Never print ``value`` (e.g. an S3 secret key read from a file) in any log line."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK + "@", text)
    for s in _secrets:
        if s in text:
            text = text.replace(s, MASK)
    return text


def _field(key: str, value: Any) -> Any:
    return MASK if _SECRET_NAME.search(key) else value


class JsonFormatter(logging.Formatter):
    def __init__(self, process_name: str | None = None) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "level": record.levelname,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "message": record.getMessage(),
            "logger": record.name,
        }
        if self.process_name:
            out["process"] = self.process_name
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = _field(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        # scrub the finished line: covers the message, extra fields and tracebacks
        return scrub(json.dumps(out, default=str, ensure_ascii=False))


def log_path(cfg: LogConfig) -> Path:
    return Path(cfg.dir) / cfg.file


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is when a record is emitted, so a
    caller that swaps stdout (pytest capture, an embedding app) never leaves
    the handler writing to a closed stream."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def setup(cfg: LogConfig | None, process_name: str = "supervisor", stdout: bool = True) -> Path | None:
    """Route the root logger to JSON lines on stdout and the log file.

    Idempotent: handlers installed by an earlier call are replaced, so a child
    process (or a library calling this again) never duplicates lines.
    Raises OSError if the log file cannot be opened.
    """
    for env in _SECRET_ENV:
        register_secret(os.environ.get(env))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _OURS, False):
            root.removeHandler(h)
            h.close()
    fmt = JsonFormatter(process_name)
    handlers: list[logging.Handler] = []
    path: Path | None = None
    if cfg is not None and cfg.file:
        path = log_path(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="a", encoding="utf-8"))
    if stdout:
        handlers.append(_StdoutHandler())
    for h in handlers:
        h.setFormatter(fmt)
        setattr(h, _OURS, True)
        root.addHandler(h)
    root.setLevel((cfg.level if cfg is not None else "INFO").upper())
    logging.captureWarnings(True)
    return path
