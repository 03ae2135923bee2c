"""``capture run CONFIG --shard K/N``: one fleet config, its feeds dealt over N capture hosts.

A feed is one (exchange, symbol). Its expected load is the sum of a weight per
configured channel (``CHANNEL_WEIGHTS``: a diff book costs several times a
trade stream). Feeds are dealt greedily, heaviest first, each to the shard
with the least load so far (ties: the lower shard). The order is by weight,
then exchange, then symbol, so the result depends on the fleet's feed set
only, never on the order of tables or symbols in the file: every host computes
the same assignment from the same config without talking to the others.

Every shard writes the same table layout; its files carry the tag
``shard-K-of-N`` (``data-shard-K-of-N.parquet``), so shards syncing to one S3
prefix never write the same key, even for the rows of no symbol (``symbol=_``:
connection events, acks) that every shard of an exchange has, or for a feed
that moved between shards when the fleet changed. Readers take the union.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from ticktape.engine.settings import Config, ConfigError

#: expected load of one symbol's channel, in arbitrary units (a trade stream = 2); see README "Sharding"
CHANNEL_WEIGHTS: dict[str, int] = {
    "book_change": 10,  # diff depth: the most frames, and each carries many levels
    "book_snapshot": 5,  # top-N snapshots, every 100 ms or every book event
    "book_ticker": 4,  # every change of the best bid/ask
    "trades": 2,
    "derivative_ticker": 1,  # about one frame per second
    "liquidations": 1,  # rare bursts
}
#: a channel missing from the table weighs this much
DEFAULT_WEIGHT = 2
MAX_SHARDS = 4096

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Feed:
    exchange: str
    symbol: str
    weight: int


@dataclass(frozen=True, slots=True)
class Assignment:
    """Shard ``k`` of ``n``: its feeds and load, and the whole fleet's for comparison."""

    k: int
    n: int
    feeds: tuple[Feed, ...]
    loads: tuple[int, ...]  # every shard's load, shard 1 first
    total_feeds: int

    @property
    def tag(self) -> str:
        return f"shard-{self.k}-of-{self.n}"

    @property
    def load(self) -> int:
        return self.loads[self.k - 1]

    def describe(self) -> str:
        """One line for the log and the console."""
        by_ex: dict[str, list[str]] = {}
        for f in self.feeds:
            by_ex.setdefault(f.exchange, []).append(f.symbol)
        feeds = "; ".join(f"{ex} {' '.join(syms)}" for ex, syms in by_ex.items())
        total = sum(self.loads)
        return (
            f"shard {self.k}/{self.n}: {len(self.feeds)} of {self.total_feeds} feeds, load {self.load} of {total} "
            f"(shard loads {', '.join(map(str, self.loads))}), files tagged {self.tag}: {feeds}"
        )


def parse_spec(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N); a ConfigError naming the allowed range otherwise."""
    m = _SPEC.match(text)
    if not m:
        raise ConfigError(f"--shard {text!r}: give K/N with whole numbers, e.g. --shard 1/2")
    k, n = int(m[1]), int(m[2])
    if not 1 <= n <= MAX_SHARDS:
        raise ConfigError(f"--shard {text}: N={n} is out of range (allowed 1..{MAX_SHARDS})")
    if not 1 <= k <= n:
        raise ConfigError(f"--shard {text}: K={k} is out of range (allowed 1..{n})")
    return k, n


def feed_weight(channels: list[str]) -> int:
    return max(1, sum(CHANNEL_WEIGHTS.get(c, DEFAULT_WEIGHT) for c in dict.fromkeys(channels)))


def fleet_feeds(cfg: Config) -> list[Feed]:
    """Every (exchange, symbol) of the config with its weight (duplicates once)."""
    out: dict[tuple[str, str], Feed] = {}
    for ex, ec in cfg.exchanges.items():
        w = feed_weight(ec.channels)
        for sym in ec.symbols:
            out.setdefault((ex, sym), Feed(ex, sym, w))
    return list(out.values())


def deal(feeds: list[Feed], n: int) -> list[list[Feed]]:
    """Greedy largest-first bin packing onto ``n`` shards; independent of the input order."""
    shards: list[list[Feed]] = [[] for _ in range(n)]
    loads = [0] * n
    for f in sorted(feeds, key=lambda f: (-f.weight, f.exchange, f.symbol)):
        i = min(range(n), key=lambda j: (loads[j], j))
        shards[i].append(f)
        loads[i] += f.weight
    return shards


def assign(cfg: Config, k: int, n: int) -> Assignment:
    feeds = fleet_feeds(cfg)
    if n > len(feeds):
        raise ConfigError(
            f"--shard {k}/{n}: {cfg.source} has {len(feeds)} feeds (exchange, symbol), so N must be at most "
            f"{len(feeds)} (allowed 1..{len(feeds)}): a shard with no feed would capture nothing"
        )
    shards = deal(feeds, n)
    mine = shards[k - 1]
    order = {(f.exchange, f.symbol): i for i, f in enumerate(feeds)}  # the config's order, for display
    mine = sorted(mine, key=lambda f: order[(f.exchange, f.symbol)])
    return Assignment(k, n, tuple(mine), tuple(sum(f.weight for f in s) for s in shards), len(feeds))


def shard_config(cfg: Config, a: Assignment) -> Config:
    """The config shard ``a.k`` runs: its feeds only, files tagged, its own log file name."""
    mine: dict[str, set[str]] = {}
    for f in a.feeds:
        mine.setdefault(f.exchange, set()).add(f.symbol)
    exchanges = {
        ex: msgspec.structs.replace(ec, symbols=[s for s in dict.fromkeys(ec.symbols) if s in mine[ex]])
        for ex, ec in cfg.exchanges.items()
        if ex in mine
    }
    tag = f"{cfg.archive.file_tag}-{a.tag}" if cfg.archive.file_tag else a.tag
    stem, dot, ext = cfg.log.file.rpartition(".")
    log_file = f"{stem}-{a.tag}.{ext}" if dot and stem else f"{cfg.log.file}-{a.tag}"
    return msgspec.structs.replace(
        cfg,
        exchanges=exchanges,
        archive=msgspec.structs.replace(cfg.archive, file_tag=tag),
        log=msgspec.structs.replace(cfg.log, file=log_file),
    )
