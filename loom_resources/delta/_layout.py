"""How the Parquet files Polars encodes for a Delta table are laid out (``_files`` writes them).

The choices, measured on the benchmark workload (``bench/cases_files.py``; docs/performance.md,
"File layout"), against delta-rs' own writer (snappy, row groups of 1Mi rows, one file of up to
~100 MiB):

==================  =======================================================================
compression         zstd at level 1: the same rows in ~1/4 of delta-rs' snappy bytes; level 1
                    encodes about as fast as snappy on every core, higher levels cost time for
                    no gain on typical columns. Every engine in the conformance suite reads it.
row groups          at most ``ROW_GROUP_ROWS`` rows (polars' own default), never the batches a
                    stream happened to arrive in (a row group per 100k-row batch cost bytes).
                    Min/max of each row group let a reader skip 256k-row slices of a file, a
                    quarter of what delta-rs' 1Mi-row groups allow.
statistics          min, max and null count of every column in every row group (readers prune
                    row groups by them; the Delta log carries the per-file ones, ``_stats``)
dictionary          polars' rule: a dictionary page where a column chunk's values repeat,
                    plain pages otherwise (a dictionary of unique ids only costs bytes)
file size           ``_files.TARGET_FILE_BYTES`` of rows in memory a file
==================  =======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Literal

import polars as pl

__all__ = ["LAYOUT", "ROW_GROUP_ROWS", "ParquetLayout"]

#: Rows per row group (polars' default: 512**2).
ROW_GROUP_ROWS = 262_144


@dataclass(frozen=True)
class ParquetLayout:
    """The encoding options of one data file."""

    compression: Literal["zstd", "snappy", "lz4", "uncompressed"] = "zstd"
    compression_level: int | None = 1
    row_group_rows: int = ROW_GROUP_ROWS
    #: Bytes of a data page before it is compressed (``None``: polars' default, 1 MiB).
    data_page_bytes: int | None = None

    @property
    def suffix(self) -> str:
        """The file name's ending, as delta-rs names its files (``.zstd.parquet``)."""
        return ".parquet" if self.compression == "uncompressed" else f".{self.compression}.parquet"

    def write(self, df: pl.DataFrame, target: str | IO[bytes]) -> None:
        """Encode ``df`` as one Parquet file at ``target`` (a path or a binary buffer)."""
        df.write_parquet(target, compression=self.compression, compression_level=self.compression_level,
                         statistics=True, row_group_size=self.row_group_rows, data_page_size=self.data_page_bytes)


#: The layout of every file ``_files`` writes.
LAYOUT = ParquetLayout()
