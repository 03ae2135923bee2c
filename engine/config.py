"""Configuration: TOML (tomllib) into msgspec Structs (``engine.settings``).

Unknown keys, wrong types and missing required keys are errors that name the
key and the file (``ConfigError``), raised before anything connects.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec

from ticktape.archive.layout import LayoutError, check_exchange, check_symbol, check_tag
from ticktape.engine.connectors import connector
from ticktape.engine.settings import (
    ArchiveConfig,
    Config,
    ConfigError,
    ExchangeConfig,
    LogConfig,
    MetricsConfig,
    RingConfig,
    S3Config,
    SimulatorConfig,
    SupervisorConfig,
)

# the settings types are re-exported: ``from ticktape.engine.config import ArchiveConfig`` keeps working
__all__ = [
    "ArchiveConfig",
    "Config",
    "ConfigError",
    "ExchangeConfig",
    "LogConfig",
    "MetricsConfig",
    "RingConfig",
    "S3Config",
    "SimulatorConfig",
    "SupervisorConfig",
    "effective_raw",
    "from_dict",
    "load",
    "validate",
]


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
        raw = tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise _err(str(p), f"invalid TOML: {e}") from None
    return from_dict(raw, str(p))


def _msg(e: msgspec.ValidationError, prefix: str) -> str:
    # msgspec says e.g. "Object missing required field `symbols` - at `$.archive`"
    text = str(e)
    m = re.search(r" - at `\$(.*)`$", text)
    where = prefix + (m[1] if m else "")
    text = text[: m.start()] if m else text
    # name the offending key itself, not only the table that holds it
    f = re.fullmatch(r"Object (contains unknown|missing required) field `([^`]*)`", text)
    if f:
        where = f"{where}.{f[2]}"
        text = "unknown key (not a setting)" if f[1] == "contains unknown" else "missing required key"
    return f"key {where.lstrip('.') or '(top level)'}: {text}"


def from_dict(data: dict, source: str = "<config>") -> Config:
    exchanges = data.get("exchanges")
    if isinstance(exchanges, dict):  # per exchange, so errors name the exchange key
        for name, ex in exchanges.items():
            try:
                msgspec.convert(ex, ExchangeConfig, strict=True)
            except msgspec.ValidationError as e:
                raise _err(source, _msg(e, f"exchanges.{name}")) from None
    try:
        cfg = msgspec.convert(data, Config, strict=True)
    except msgspec.ValidationError as e:
        raise _err(source, _msg(e, "")) from None
    cfg.source = source
    validate(cfg)
    return cfg


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_DAY = 86400.0


def _num(src: str, key: str, value: float, lo: float, hi: float, unit: str = "", lo_open: bool = False) -> None:
    """``lo <= value <= hi`` (``lo < value`` with ``lo_open``); NaN and inf fail too.
    The error names the file, the key and the allowed range."""
    ok = (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        f = (lambda x: str(int(x)) if float(x).is_integer() else f"{x:g}")  # noqa: E731
        rng = f"> {f(lo)} and <= {f(hi)}" if lo_open else f"{f(lo)}..{f(hi)}"
        raise _err(src, f"key {key}: {value!r} is out of range (allowed {rng}{' ' + unit if unit else ''})")


def _url(src: str, key: str, value: str, schemes: tuple[str, ...]) -> None:
    from urllib.parse import urlsplit

    try:
        u = urlsplit(value)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise _err(src, f"key {key}: {value!r} is not a URL ({e})") from None
    if u.scheme not in schemes or not u.netloc:
        want = " or ".join(f"{s}://host[:port]/..." for s in schemes)
        raise _err(src, f"key {key}: {value!r} is not a URL (expected {want})")


def validate(cfg: Config) -> None:
    """Every value range-checked before anything starts (one line: file, key, allowed range)."""
    src = cfg.source
    if not cfg.exchanges:
        raise _err(src, "key exchanges: at least one exchange is required")
    if cfg.simulator is not None:
        sim = cfg.simulator
        _num(src, "simulator.port", sim.port, 1, 65535, "(the exchanges' url names it)")
        _num(src, "simulator.rate", sim.rate, 0, 100_000, "events/s per symbol", lo_open=True)
        _num(src, "simulator.trade_share", sim.trade_share, 0, 1)
        _num(src, "simulator.seed", sim.seed, 0, 2**32 - 1)
        if not sim.host:
            raise _err(src, "key simulator.host: must not be empty")
        _num(src, "simulator.replay_speed", sim.replay_speed, 0, 1000, "(0 = as fast as possible, 1 = recorded pace)")
        if sim.replay is not None:
            _check_recording(src, sim.replay)
    a = cfg.archive
    if not a.root.strip():
        raise _err(src, "key archive.root: must not be empty")
    _num(src, "archive.flush_interval", a.flush_interval, 0, 1.0, "second", lo_open=True)
    _num(src, "archive.finalize_grace", a.finalize_grace, 0, 3600, "seconds")
    _num(src, "archive.zstd_level", a.zstd_level, 1, 22)
    _num(src, "archive.row_group_size", a.row_group_size, 1, 64 << 20, "rows")
    try:
        check_tag(a.file_tag)
    except LayoutError as e:
        raise _err(src, f"key archive.file_tag: {e}") from None
    _num(src, "writers", cfg.writers, 1, 64)
    r = cfg.ring
    _num(src, "ring.records", r.records, 1024, 1 << 30, "records")
    _num(src, "ring.raw_records", r.raw_records, 1024, 1 << 30, "frames")
    _num(src, "ring.raw_bytes", r.raw_bytes, 1 << 20, 1 << 40, "bytes")
    _num(src, "metrics.port", cfg.metrics.port, 0, 65535, "(0 disables /metrics)")
    if not cfg.metrics.host:
        raise _err(src, "key metrics.host: must not be empty")
    if cfg.log.level.upper() not in _LOG_LEVELS:
        raise _err(src, f"key log.level: {cfg.log.level!r} must be one of {', '.join(_LOG_LEVELS)}")
    if not cfg.log.dir.strip():
        raise _err(src, "key log.dir: must not be empty")
    if cfg.log.max_bytes < 4096:
        raise _err(src, f"key log.max_bytes: {cfg.log.max_bytes} must be >= 4096 (bytes before the log file rotates)")
    if not 0 <= cfg.log.backups <= 1000:
        raise _err(src, f"key log.backups: {cfg.log.backups} must be 0..1000 (rotated log files kept)")
    if not cfg.log.file or "/" in cfg.log.file or cfg.log.file in (".", ".."):
        raise _err(src, f"key log.file: {cfg.log.file!r} must be a file name (no '/'), inside log.dir")
    sup = cfg.supervisor
    _num(src, "supervisor.restart_delay_max", sup.restart_delay_max, 0, 3600, "seconds", lo_open=True)
    _num(src, "supervisor.restart_delay", sup.restart_delay, 0, sup.restart_delay_max,
         "seconds (<= supervisor.restart_delay_max)", lo_open=True)
    _num(src, "supervisor.ingest_stop_timeout", sup.ingest_stop_timeout, 0, 3600, "seconds", lo_open=True)
    _num(src, "supervisor.drain_timeout", sup.drain_timeout, 0, _DAY, "seconds", lo_open=True)
    _num(src, "supervisor.start_failures", sup.start_failures, 1, 1000)
    _num(src, "supervisor.start_window", sup.start_window, 0, 3600, "seconds", lo_open=True)
    if cfg.s3 is not None:
        _validate_s3(src, cfg.s3)
    for name, ex in cfg.exchanges.items():
        key = f"exchanges.{name}"
        try:
            check_exchange(name)
        except LayoutError as e:
            raise _err(src, f"key {key}: {e}") from None
        if not ex.symbols:
            raise _err(src, f"key {key}.symbols: at least one symbol is required")
        if len(set(ex.symbols)) != len(ex.symbols):
            raise _err(src, f"key {key}.symbols: duplicate symbols")
        for s in ex.symbols:
            try:
                check_symbol(s)
            except LayoutError as e:
                raise _err(src, f"key {key}.symbols: {e}") from None
        _num(src, f"{key}.depth", ex.depth, 1, 1000, "levels")
        if ex.silent_after is not None:
            _num(src, f"{key}.silent_after", ex.silent_after, 0, _DAY, "seconds (0 = off)")
        if ex.rest_url is not None:
            _url(src, f"{key}.rest_url", ex.rest_url, ("http", "https"))
        _validate_exchange(src, key, name, ex)


def _check_recording(src: str, name: str) -> None:
    """``simulator.replay`` names a readable, non-empty file (its format is read when the simulator starts)."""
    p = Path(name)
    why = ""
    if not name.strip():
        why = "must not be empty"
    elif not p.exists():
        why = "no such file"
    elif not p.is_file():
        why = "not a file"
    else:
        from ticktape.sim.replay import sniff

        try:
            with p.open("rb") as fh:
                if not fh.read(1):
                    why = "the file is empty"
            if not why and not sniff(p):
                why = "not a recording in a format the simulator reads"
        except (OSError, EOFError, ValueError) as e:  # unreadable, or a corrupt gzip/zstd stream
            why = f"cannot read it ({getattr(e, 'strerror', None) or e})"
    if why:
        raise _err(src, f"key simulator.replay: {name!r}: {why} (a recording: cryptofeed v2/v3 or '<ns> <frame>' lines)")


def _validate_s3(src: str, s3: S3Config) -> None:
    from ticktape.archive.s3_client import S3Error, parse_url

    try:
        parse_url(s3.url)
    except S3Error as e:
        raise _err(src, f"key s3.url: {e}") from None
    if s3.endpoint_url is not None:
        _url(src, "s3.endpoint_url", s3.endpoint_url, ("http", "https"))
    _num(src, "s3.concurrency", s3.concurrency, 1, 256, "parallel transfers")
    _num(src, "s3.connect_timeout", s3.connect_timeout, 0, 600, "seconds", lo_open=True)
    _num(src, "s3.read_timeout", s3.read_timeout, 0, 3600, "seconds", lo_open=True)
    _num(src, "s3.max_attempts", s3.max_attempts, 1, 20)


def _validate_exchange(src: str, key: str, name: str, ex: ExchangeConfig) -> None:
    """Exchange-specific checks (known exchange, symbols, channels) live with the connectors."""
    try:
        connector(name).validate(name, ex)
    except ValueError as e:
        raise _err(src, f"key {key}: {e}") from None


def effective_raw(cfg: Config, exchange: str) -> bool:
    ex = cfg.exchanges[exchange]
    return cfg.archive.raw if ex.raw is None else ex.raw
