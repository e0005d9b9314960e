"""dagster-polars alongside Loom tables.

Plain ``@dg.asset``s that store polars frames with dagster-polars' IO managers mix with declared
tables both ways: a plain asset reads a declared table through the Loom IO manager (the
upstream's IO manager loads an input, so it arrives sliced to the run's partitions), and a
declared table reads a plain asset with ``Source("schema.name", asset=True)`` (loaded by the
plain asset's own IO manager).

On polars 2.x, dagster-polars 0.27's Parquet reads fail ("the argument 'rechunk' for
'scan_parquet' has been removed", then the same for ``retries``); :class:`PolarsParquetIOManager`
here is its Parquet IO manager with that read fixed. Its writes, Delta IO manager and metadata helpers are used as they are.
"""

from typing import Any

import polars as pl
from dagster import InputContext
from dagster_polars import PolarsParquetIOManager as _UpstreamParquetIOManager
from dagster_polars.io_managers import parquet as _upstream

__all__ = ["PolarsParquetIOManager"]

# scan_parquet options dagster-polars reads from definition metadata that polars 2.x still accepts
_SCAN_OPTIONS = {"n_rows": None, "cache": True, "parallel": "auto", "low_memory": False, "use_statistics": True,
                 "hive_partitioning": True}


class PolarsParquetIOManager(_UpstreamParquetIOManager):
    """dagster-polars' ``PolarsParquetIOManager`` whose reads work on polars 2.x (no ``rechunk``/``retries``)."""

    def scan_df_from_path(self, path: Any, context: InputContext, partition_key: str | None = None) -> pl.LazyFrame:
        """Scan the stored Parquet with the options dagster-polars supports that polars 2.x still has."""
        metadata = context.definition_metadata or {}
        kwargs = {k: metadata.get(k, default) for k, default in _SCAN_OPTIONS.items()}
        options = _upstream._remap_fsspec_storage_options(  # noqa: SLF001 - reuse its fsspec -> object_store mapping
            self.storage_options or getattr(path, "storage_options", None)
        )
        return pl.scan_parquet(str(path), storage_options=options, **kwargs)
