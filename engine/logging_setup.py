"""JSON-lines logging for every ticktape process (supervisor and children).

One object per line, as the seed's archiver writes them, so ``jq``/DuckDB can
read the log: ``{"level", "time" (ISO UTC, microseconds), "message", "logger",
"process", ...extra fields}``.

One process writes the log file: under ``capture run`` the supervisor owns
``<log.dir>/<log.file>`` (rotated at ``log.max_bytes``, ``log.backups`` kept),
and children send each finished line to it as one datagram on an abstract Unix
socket (``engine.log_sink``; lock-free, so a child killed mid-log blocks no
one). A child whose supervisor is gone appends to its own rotating file
``<stem>.<process>.log``. A process run alone (an ingest test, ``replay
serve``) writes the file itself. The console (stdout) shows JSON lines, or
``engine.console``'s readable view when ``capture run`` is on a terminal.

Credentials never reach the log: extra fields whose names look like secrets
are masked, URL passwords (``scheme://user:pass@``) are masked, and the values
of the standard AWS secret variables (plus anything passed to
``register_secret``) are replaced wherever they appear.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import socket
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ticktape.engine.settings import LogConfig

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
_MAX_DATAGRAM = 60_000  # bytes of one forwarded line (longer lines are cut, marked "truncated")
_state: dict[str, Any] = {"sink": None}


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
        line = getattr(record, "_line", None)
        if line is not None:  # a line finished (and scrubbed) by another process
            return str(line)
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


class _SinkHandler(logging.Handler):
    """Sends each finished line to the supervisor's log sink (one datagram); falls back
    to this process's own rotating file when the supervisor is not there."""

    def __init__(self, address: str, fallback: Callable[[], logging.Handler | None]) -> None:
        super().__init__()
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.settimeout(5.0)  # a full sink queue waits (bounded), never drops silently
        self._fallback_factory = fallback
        self._fallback: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            data = line.encode("utf-8", "replace")
            if len(data) > _MAX_DATAGRAM:
                obj = json.loads(line)
                for k in ("message", "exc"):
                    if isinstance(obj.get(k), str):
                        obj[k] = obj[k][: _MAX_DATAGRAM // 4]
                obj["truncated"] = True
                data = json.dumps(obj, default=str, ensure_ascii=False).encode()[:_MAX_DATAGRAM]
            self.sock.sendto(data, self.address)
        except OSError:
            if self._fallback is None:
                self._fallback = self._fallback_factory()
            if self._fallback is not None:
                self._fallback.handle(record)
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        if self._fallback is not None:
            self._fallback.close()
        super().close()


def _rotating(path: Path, cfg: LogConfig) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    return logging.handlers.RotatingFileHandler(
        path, mode="a", maxBytes=cfg.max_bytes, backupCount=cfg.backups, encoding="utf-8"
    )


def own_file(cfg: LogConfig, process_name: str) -> Path:
    """A child's own log file, used only when the supervisor's sink is gone."""
    p = log_path(cfg)
    return p.with_name(f"{p.stem}.{process_name}{p.suffix or '.log'}")


def quiet_third_party(record: logging.LogRecord) -> bool:
    """Console filter: other libraries' INFO chatter (picows' "New connection
    accepted", aiohttp's access lines) stays in the file, out of the console."""
    return record.name.startswith(("ticktape", "py.warnings")) or record.levelno >= logging.WARNING


def setup(
    cfg: LogConfig | None,
    process_name: str = "supervisor",
    stdout: bool = True,
    sink: str | None = None,
    console: logging.Handler | None = None,
) -> Path | None:
    """Route the root logger to JSON lines on stdout and the (rotating) log file.

    ``sink``: the supervisor's log-sink address; lines go there instead of the
    file and stdout (a later call without ``sink`` in the same process keeps it).
    ``console``: a handler to use instead of JSON lines on stdout (the readable
    console); it sees ticktape's records and other libraries' warnings.
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
    sink = sink or _state["sink"]
    _state["sink"] = sink
    if sink is not None:
        c = cfg
        handlers.append(_SinkHandler(sink, lambda: _fallback_file(c, process_name, fmt)))
    else:
        if cfg is not None and cfg.file:
            path = log_path(cfg)
            handlers.append(_rotating(path, cfg))
        if console is not None:
            console.addFilter(quiet_third_party)
            handlers.append(console)
        elif stdout:
            handlers.append(_StdoutHandler())
    for h in handlers:
        if h is not console:
            h.setFormatter(fmt)
        setattr(h, _OURS, True)
        root.addHandler(h)
    root.setLevel((cfg.level if cfg is not None else "INFO").upper())
    logging.captureWarnings(True)
    return path


def _fallback_file(cfg: LogConfig | None, process_name: str, fmt: logging.Formatter) -> logging.Handler | None:
    if cfg is None or not cfg.file:
        return None
    try:
        h = _rotating(own_file(cfg, process_name), cfg)
    except OSError:
        return None
    h.setFormatter(fmt)
    return h


def forward(line: str) -> None:
    """Hand a line another process finished (read from the sink) to this process's
    handlers: written as is to the file and JSON stdout, parsed for the console."""
    try:
        obj = json.loads(line)
    except ValueError:
        obj = {"message": line, "level": "INFO", "logger": "ticktape.child"}
    level = logging.getLevelName(str(obj.get("level", "INFO")))
    rec = logging.makeLogRecord({
        "name": str(obj.get("logger", "")), "levelno": level if isinstance(level, int) else logging.INFO,
        "levelname": str(obj.get("level", "INFO")), "msg": str(obj.get("message", "")), "args": None,
        "_line": line, "_obj": obj,
    })
    for h in logging.getLogger().handlers:
        if getattr(h, _OURS, False) and rec.levelno >= h.level:
            h.handle(rec)
