"""The configuration's shape: msgspec Structs, one per TOML table, and its error.

Pure data with no imports from the engine, so modules that only need a
settings type (connectors, writers, exchanges) depend on this module, not on
``engine.config`` (the loader, which asks the connectors to validate).
"""

from __future__ import annotations

import msgspec


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
    #: tag in every file name this capture writes (``data-<tag>.parquet``; '' = ``data.parquet``), so
    #: captures sharing one S3 prefix never write the same key; ``--shard K/N`` sets ``shard-K-of-N``
    file_tag: str = ""


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
    #: the log file is rotated when it would grow past this many bytes
    max_bytes: int = 64 * 1024 * 1024
    #: rotated files kept (capture.log.1 .. capture.log.N); older ones are deleted
    backups: int = 5


class SupervisorConfig(_Strict):
    #: delay before restarting a child that died; doubles per consecutive crash
    restart_delay: float = 0.5
    restart_delay_max: float = 30.0
    #: seconds ingest processes get to stop before they are terminated
    ingest_stop_timeout: float = 10.0
    #: seconds writers get to drain the rings and finalize files at shutdown
    drain_timeout: float = 120.0
    #: a child that dies this many times in a row within ``start_window`` s of starting
    #: can never start (a port taken, a root it cannot write, ...): the run stops, exit 1, with the reason
    start_failures: int = 5
    start_window: float = 10.0


class S3Config(_Strict):
    #: s3://bucket/prefix to mirror the archive to after each hourly finalize
    url: str
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    concurrency: int = 8
    #: seconds to open a connection / to wait for each read; a frozen endpoint ends in an error
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    #: attempts per request (botocore standard retries)
    max_attempts: int = 3


class ExchangeConfig(_Strict):
    symbols: list[str]
    #: normalized streams: trades, book_change, book_snapshot, book_ticker, derivative_ticker, liquidations
    channels: list[str] = msgspec.field(default_factory=lambda: ["trades", "book_change"])
    #: levels for book_snapshot (and the book depth subscribed where it matters)
    depth: int = 20
    #: websocket base URL override (e.g. the simulator); default: the real exchange
    url: str | None = None
    #: REST base URL override (book snapshots, instrument list)
    rest_url: str | None = None
    #: per-exchange override of archive.raw
    raw: bool | None = None
    #: binance: "aggTrade" (default) or "trade"
    trade_stream: str | None = None
    #: binance: diff depth push speed, "0ms", "100ms" (default) or "500ms"
    depth_speed: str | None = None
    #: binance: seconds between open interest polls of one symbol (REST; default 10)
    open_interest_interval: float | None = None
    #: check the symbols against the venue's instrument list at start (false: a feed with no list)
    check_symbols: bool = True
    #: binance family: seconds a stream may deliver nothing after its subscribe before the venue's
    #: instrument list is asked why (gone: ``subscribe_error``; listed: ``stream_silent``); default 60, 0 = off
    silent_after: float | None = None


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
    #: a recording to serve instead of the synthetic market (cryptofeed v2/v3 or
    #: ``<ns> <frame>`` lines, plain, gzip or zstd; relative paths from the working directory)
    replay: str | None = None
    #: replay pacing: 0 = as fast as possible, 1 = the recorded pace, 2 = twice as fast
    replay_speed: float = 0.0


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
