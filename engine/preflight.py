"""Checks made before any child starts, each failing as one line (``StartError``, exit 2):
the archive root is writable, the ports the run listens on are free, and /dev/shm
has room for what the rings really map (they are reserved at creation, see
``ipc.ring.create_shm``)."""

from __future__ import annotations

import os
import socket

from ticktape.ipc.ring import HEADER_BYTES, shm_reserved_bytes
from ticktape.ipc.ringset import RingSetSpec
from ticktape.ipc.schemas import RAW_INDEX_DTYPE, dtype_for
from ticktape.ipc.stats import feed_stats_bytes

SHM_DIR = "/dev/shm"


class StartError(RuntimeError):
    """Something the user must fix before the capture can start (one line)."""


def check_root_writable(root: str, key: str = "archive.root") -> None:
    """Create the root if needed and write + fsync + remove a probe file in it:
    a read-only or full root fails here, not in a writer crash loop later."""
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, f".preflight-{os.getpid()}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"ticktape preflight\n")
            os.fsync(fd)
        finally:
            os.close(fd)
            try:
                os.unlink(probe)
            except FileNotFoundError:
                pass
    except OSError as e:
        raise StartError(f"{key} {root}: not writable ({e.strerror or e})") from None


def check_port_free(host: str, port: int, key: str) -> None:
    """Bind and release host:port the way a server would (SO_REUSEADDR): a port
    held by another program fails here instead of in a child's crash loop."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        raise StartError(f"{key} {host}:{port}: cannot resolve ({e.strerror or e})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
            s.listen(1)
        except OSError as e:
            raise StartError(f"{key} {host}:{port}: already in use by another program ({e.strerror or e})") from None


def spec_bytes(spec: RingSetSpec) -> int:
    """Bytes of /dev/shm that ``ringset.create(spec)`` plus the FeedStats block reserve
    (same sizing rules; each segment rounded up to whole pages as tmpfs charges them)."""
    sizes = []
    for dt in spec.rings:
        if dt == "raw":
            sizes.append(HEADER_BYTES + spec.raw_index_capacity * RAW_INDEX_DTYPE.itemsize)
            sizes.append(HEADER_BYTES + spec.raw_arena_bytes)
        else:
            cap = spec.record_capacity if dt != "events" else max(4096, spec.record_capacity // 16)
            sizes.append(HEADER_BYTES + cap * dtype_for(dt).itemsize)
    sizes.append(feed_stats_bytes(len(spec.symbols), len(spec.channels)))  # FeedStats
    return sum(shm_reserved_bytes(n) for n in sizes)


def check_shm_room(specs: list[RingSetSpec], source: str, shm_dir: str = SHM_DIR) -> int:
    """The sum of every ring, arena and stats block must fit in /dev/shm's free space."""
    need = sum(spec_bytes(s) for s in specs)
    try:
        st = os.statvfs(shm_dir)
    except OSError:  # not Linux: nothing to check
        return need
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise StartError(
            f"{source}: key ring: the rings need {_mib(need)} MiB of shared memory but {shm_dir} "
            f"has {_mib(free)} MiB free; lower ring.records / ring.raw_records / ring.raw_bytes "
            "(or the book_snapshot depth)"
        )
    return need


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f}" if n >= (10 << 20) else f"{n / (1 << 20):.1f}"
