"""The archive's tables as pyarrow datasets, partition columns typed.

Each data type is a table directory (``<root>/<table>/``) holding only Hive
partitions ``exchange=/symbol=/date=/hour=`` and ``data.parquet`` files, so any
engine reads it whole. pyarrow (and pandas on top of it) infers ``date`` as a
string by default; ``dataset`` gives it the explicit partition schema instead:
``exchange``/``symbol`` strings, ``date`` a ``date32``, ``hour`` an ``int8``.
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from ticktape.archive.layout import check_data_type
from ticktape.ipc.schemas import arrow_schema_for

#: the Hive partition columns of every table, outermost first (see ``archive.layout``)
PARTITION_SCHEMA = pa.schema(
    [("exchange", pa.string()), ("symbol", pa.string()), ("date", pa.date32()), ("hour", pa.int8())]
)


def partitioning() -> ds.Partitioning:
    """Hive partitioning of a table directory with typed columns (date as date32)."""
    return ds.partitioning(PARTITION_SCHEMA, flavor="hive")


def table_dir(root: str, data_type: str) -> str:
    """``<root>/<data type>``: the directory of one table."""
    return os.path.join(root, check_data_type(data_type))


def dataset(path: str, filesystem: Any = None) -> ds.Dataset:
    """A table directory as a pyarrow dataset: the table's schema + typed partition columns.

    ``path`` is a table directory (``archive/trades``); filter with
    ``ds.field("date") == datetime.date(2025, 1, 5)`` to prune whole directories.
    """
    name = os.path.basename(os.path.normpath(path))
    schema = None
    try:
        file_schema = arrow_schema_for(check_data_type(name))
    except ValueError:
        file_schema = None
    if file_schema is not None:
        schema = pa.schema(list(file_schema) + list(PARTITION_SCHEMA))
    return ds.dataset(path, schema=schema, format="parquet", partitioning=partitioning(), filesystem=filesystem)
