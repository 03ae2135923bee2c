"""ticktape: multiprocess crypto market-data capture, zstd Parquet archive, S3 backup, Tardis-compatible replay.

The one importable top-level name. In the repository the subpackages live at the
top level (engine, ipc, writers, bench, archive, replay, sim, exchanges: the
design card's layout) and ``ticktape/`` links to them; the wheel holds them
under ``ticktape/`` so installing ticktape adds no generic top-level module.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ticktape")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
