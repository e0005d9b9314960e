"""``make demo``: materialize the whole sample platform on the embedded defaults and print what
was written, read back independently from each store (``python -m sample_platform.demo``)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from loom_assets.demo import ensure_instance, materialize_platform, observe_external


def main() -> int:
    """Materialize everything, then print tables and row counts."""
    instance = ensure_instance()
    from sample_platform.definitions import defs
    from sample_platform.external import land_external
    from sample_platform.platform import DEMO_END, DEMO_START, TABLES
    from sample_platform.report import table_report

    log_file = Path(os.environ["LOOM_HOME"]) / "logs" / f"demo-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}.log"
    print(f"LOOM_HOME={os.environ['LOOM_HOME']}  (orders per day: {os.environ.get('LOOM_DEMO_ROWS_PER_DAY', '100000')})")
    print(f"full Dagster log: {log_file}")
    print("== other systems land the external tables (outside Dagster): landing.web_events, feeds.fx_rates", flush=True)
    land_external(DEMO_START, DEMO_END + dt.timedelta(days=1))
    observe_external(defs, instance)
    results = materialize_platform(defs, instance, DEMO_START.isoformat(), DEMO_END.isoformat(), tables=TABLES,
                                   log_file=log_file)
    if not all(r.success for r in results):
        print(f"\nthe demo failed; see {log_file}")
        return 1
    print("\n== tables written (read back from the stores)")
    for line in table_report():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

