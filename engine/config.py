"""Configuration: TOML (tomllib) into msgspec Structs.

Unknown keys, wrong types and missing required keys are errors that name the
key and the file (``ConfigError``), raised before anything connects.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec

from ticktape.archive.layout import LayoutError, check_exchange, check_symbol


class ConfigError(ValueError):
    """A config problem, phrased for the user: file, key, what is wrong."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class ArchiveConfig(_Strict):
    #: local directory holding the archive (created if missing)
    root: str = "./archive"
    #: seconds between durable journal flushes (<= 1 s bounds crash loss)
    flush_interval: float = 0.5
    #: keep every exchange frame in the ``raw`` data type (needed for /replay)
    raw: bool = True
    #: seconds after an hour ends before its journals become Parquet
    finalize_grace: float = 5.0
    #: zstd level for finalized Parquet
    zstd_level: int = 3
    #: rows per Parquet row group
    row_group_size: int = 256_000


class RingConfig(_Strict):
    #: records per fixed-size ring (trades, book_change, book_snapshot_N)
    records: int = 1 << 20
    #: raw frames per exchange (index ring capacity)
    raw_records: int = 1 << 18
    #: bytes of raw payload arena per exchange
    raw_bytes: int = 64 << 20


class MetricsConfig(_Strict):
    host: str = "127.0.0.1"
    #: Prometheus text endpoint at http://host:port/metrics; 0 disables it
    port: int = 9464


class LogConfig(_Strict):
    dir: str = "./logs"
    level: str = "INFO"
    file: str = "capture.log"


class SupervisorConfig(_Strict):
    #: delay before restarting a child that died; doubles per consecutive crash
    restart_delay: float = 0.5
    restart_delay_max: float = 30.0
    #: seconds ingest processes get to stop before they are terminated
    ingest_stop_timeout: float = 10.0
    #: seconds writers get to drain the rings and finalize files at shutdown
    drain_timeout: float = 120.0


class S3Config(_Strict):
    #: s3://bucket/prefix to mirror the archive to after each hourly finalize
    url: str
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    concurrency: int = 8


class ExchangeConfig(_Strict):
    symbols: list[str]
    #: normalized streams: trades, book_change, book_snapshot
    channels: list[str] = msgspec.field(default_factory=lambda: ["trades", "book_change"])
    #: levels for book_snapshot (and the book depth subscribed where it matters)
    depth: int = 20
    #: websocket base URL override (e.g. the simulator); default: the real exchange
    url: str | None = None
    #: REST base URL override (book snapshots)
    rest_url: str | None = None
    #: per-exchange override of archive.raw
    raw: bool | None = None
    #: binance: "aggTrade" (default) or "trade"
    trade_stream: str | None = None


class SimulatorConfig(_Strict):
    """Start the built-in exchange simulator (``capture sim``) as a child of the
    capture, for demos and soak runs: point the exchanges' ``url`` at
    ``ws://127.0.0.1:<port>``."""

    port: int = 18765
    host: str = "127.0.0.1"
    #: market events per second per symbol
    rate: float = 50.0
    seed: int = 1
    #: share of market events that are trades (the rest are book updates)
    trade_share: float = 0.5


class Config(_Strict):
    exchanges: dict[str, ExchangeConfig]
    archive: ArchiveConfig = msgspec.field(default_factory=ArchiveConfig)
    ring: RingConfig = msgspec.field(default_factory=RingConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    s3: S3Config | None = None
    simulator: SimulatorConfig | None = None
    #: writer processes; exchanges are spread over them
    writers: int = 1
    #: where the file was read from (filled by ``load``)
    source: str = ""


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def load(path: str | Path) -> Config:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
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


def validate(cfg: Config) -> None:
    src = cfg.source
    if not cfg.exchanges:
        raise _err(src, "key exchanges: at least one exchange is required")
    if cfg.simulator is not None:
        sim = cfg.simulator
        if not 1 <= sim.port <= 65535:
            raise _err(src, "key simulator.port: must be 1..65535 (the exchanges' url names it)")
        if not 0 < sim.rate <= 100_000:
            raise _err(src, "key simulator.rate: must be > 0 and <= 100000 events/s per symbol")
        if not 0 <= sim.trade_share <= 1:
            raise _err(src, "key simulator.trade_share: must be 0..1")
    if not 0 < cfg.archive.flush_interval <= 1.0:
        raise _err(src, "key archive.flush_interval: must be > 0 and <= 1 second")
    if cfg.writers < 1:
        raise _err(src, "key writers: must be >= 1")
    if not 1 <= cfg.archive.zstd_level <= 22:
        raise _err(src, "key archive.zstd_level: must be 1..22")
    if cfg.ring.records < 1024 or cfg.ring.raw_records < 1024 or cfg.ring.raw_bytes < (1 << 20):
        raise _err(src, "key ring: records/raw_records >= 1024 and raw_bytes >= 1 MiB")
    if not 0 <= cfg.metrics.port <= 65535:
        raise _err(src, "key metrics.port: must be 0..65535")
    if cfg.log.level.upper() not in _LOG_LEVELS:
        raise _err(src, f"key log.level: must be one of {', '.join(_LOG_LEVELS)}")
    sup = cfg.supervisor
    if not 0 < sup.restart_delay <= sup.restart_delay_max:
        raise _err(src, "key supervisor.restart_delay: must be > 0 and <= supervisor.restart_delay_max")
    if sup.ingest_stop_timeout <= 0 or sup.drain_timeout <= 0:
        raise _err(src, "key supervisor: ingest_stop_timeout and drain_timeout must be > 0")
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
        if not 1 <= ex.depth <= 1000:
            raise _err(src, f"key {key}.depth: must be 1..1000")
        _validate_exchange(src, key, name, ex)


def _validate_exchange(src: str, key: str, name: str, ex: ExchangeConfig) -> None:
    """Exchange-specific checks (known exchange, symbols, channels) live with the connectors."""
    from ticktape.engine.connectors import connector  # late: connectors import this module

    try:
        connector(name).validate(name, ex)
    except ValueError as e:
        raise _err(src, f"key {key}: {e}") from None


def effective_raw(cfg: Config, exchange: str) -> bool:
    ex = cfg.exchanges[exchange]
    return cfg.archive.raw if ex.raw is None else ex.raw
