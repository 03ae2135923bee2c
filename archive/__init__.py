"""The archive: layout, catalog, loaders, tables as datasets, S3 backup.

``ticktape.archive.dataset(table_dir)`` opens a table directory as a pyarrow
dataset with typed partition columns (see ``archive.tables``); imported on
first use so that ``ticktape.archive.layout`` stays light for every process.
"""

from typing import Any

__all__ = ["dataset"]


def __getattr__(name: str) -> Any:
    if name == "dataset":
        from ticktape.archive.tables import dataset

        return dataset
    raise AttributeError(f"module 'ticktape.archive' has no attribute {name!r}")
