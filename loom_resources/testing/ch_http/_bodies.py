"""Request and response bodies: the compressions ClickHouse's HTTP interface speaks."""

from __future__ import annotations

import gzip
import zlib

from loom_resources.testing.ch_http._engine import QueryError


def decompress_body(data: bytes, encoding: str) -> bytes:
    """A request body as sent with ``Content-Encoding`` (clickhouse-connect sends one lz4 frame
    per block, so concatenated frames are read until the end)."""
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return data
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "zstd":
        from backports import zstd  # clickhouse-connect's own zstd dependency

        return zstd.decompress(data)
    if encoding == "lz4":
        import lz4.frame

        out, rest = [], data
        while rest:
            d = lz4.frame.LZ4FrameDecompressor()
            out.append(d.decompress(rest))
            rest = d.unused_data
        return b"".join(out)
    raise QueryError(36, f"Code: 36. DB::Exception: Unknown HTTP Content-Encoding {encoding!r}. (BAD_ARGUMENTS)")


def compress_body(data: bytes, accept: str) -> tuple[bytes, str | None]:
    """The response body compressed with the first of zstd, lz4, gzip, deflate the client accepts."""
    offered = {e.split(";")[0].strip().lower() for e in accept.split(",")}
    if "zstd" in offered:
        from backports import zstd

        return zstd.compress(data), "zstd"
    if "lz4" in offered:
        import lz4.frame

        return lz4.frame.compress(data), "lz4"
    if "gzip" in offered:
        return gzip.compress(data, compresslevel=3), "gzip"
    if "deflate" in offered:
        return zlib.compress(data, 3), "deflate"
    return data, None


# -- HTTP -----------------------------------------------------------------------------------
