"""Row counts of every declared table, read back directly from the stores (deltalake for
Delta, a fresh clickhouse-connect client for ClickHouse) — not from what the writer said."""

from __future__ import annotations

from loom_assets.settings import clickhouse_url, default_resources
from loom_resources import Backend, WriteMode
from loom_resources.run_records import RUN_RECORDS_REF
from sample_platform.platform import TABLES


def table_report() -> list[str]:
    """One line per table: backend, name, location and row count."""
    import clickhouse_connect
    from deltalake import DeltaTable

    delta = default_resources()["delta"]
    lines = []
    client = None
    try:
        for t in TABLES:
            if Backend(t.backend) is Backend.DELTA:
                uri = delta.table_uri(t.ref)
                n = DeltaTable(uri, storage_options=delta.storage_options or None).to_pyarrow_dataset().count_rows()
                lines.append(f"delta       {str(t.ref):36s} {n:>12,d} rows  {uri}")
            else:
                if client is None:
                    client = clickhouse_connect.get_client(dsn=clickhouse_url())
                final = " FINAL" if WriteMode(getattr(t, "mode", "append")) is WriteMode.MERGE else ""
                n = int(client.command(f"SELECT count() FROM `{t.ref.schema}`.`{t.ref.table}`{final}"))  # type: ignore[arg-type]
                lines.append(f"clickhouse  {str(t.ref):36s} {n:>12,d} rows  {t.ref.schema}.{t.ref.table}")
        uri = delta.table_uri(RUN_RECORDS_REF)
        n = DeltaTable(uri, storage_options=delta.storage_options or None).to_pyarrow_dataset().count_rows()
        lines.append(f"delta       {str(RUN_RECORDS_REF):36s} {n:>12,d} rows  (audit trail: one row per write)")
    finally:
        if client is not None:
            client.close()
    return lines
