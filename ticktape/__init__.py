"""ticktape: multiprocess crypto market-data capture, zstd Parquet archive, S3 backup, Tardis-compatible replay.

The one importable top-level name. In the repository the subpackages live at the
top level (engine, ipc, writers, bench, archive, replay, sim, exchanges: the
design card's layout) and ``ticktape/`` links to them; the wheel holds them
under ``ticktape/`` so installing ticktape adds no generic top-level module.
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__`` read from the installed metadata when first asked for: importlib.metadata scans
    the environment (~0.1 s), which every ``capture`` start (``replay serve`` listening within 1 s)
    would otherwise pay."""
    if name != "__version__":
        raise AttributeError(f"module 'ticktape' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("ticktape")
    except PackageNotFoundError:  # a source checkout that was never installed
        v = "0.0.0"
    globals()["__version__"] = v
    return v
