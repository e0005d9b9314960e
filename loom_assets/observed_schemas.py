"""The last observed schema of each external table whose columns are discovered, remembered
for the next load of the code location.

The UI draws an asset's Columns section from its definition (or its latest materialization),
never from an observation, and a discovered table's columns are unknown when the code location
loads (loading opens no store: the embedded ClickHouse engine allows one process per data
path). So each observation writes the schema it found to ``$LOOM_HOME/observed_schemas.json``
and the definitions read it back: the columns appear after the first observation, once the code
location reloads ("Reload definitions" in the UI, or any new process).

Hand-written because it is one small JSON file; a missing, corrupt or unwritable file only
means no Columns section (never a failed load or observation).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from loom_assets.settings import loom_home
from loom_resources import ColumnSchema, TableRef
from loom_resources.dtypes import Schema

__all__ = ["remember_schema", "remembered_schema", "schemas_file"]


def schemas_file() -> Path:
    """Where the observed schemas are kept."""
    return loom_home() / "observed_schemas.json"


def _load() -> dict[str, list[list[object]]]:
    try:
        data = json.loads(schemas_file().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered_schema(ref: TableRef) -> Schema | None:
    """The schema last observed for ``ref``; ``None`` when never observed (or unreadable)."""
    cols = _load().get(str(ref))
    if not isinstance(cols, list):
        return None
    try:
        return tuple(ColumnSchema(str(name), str(dtype), bool(nullable)) for name, dtype, nullable in cols)
    except (TypeError, ValueError):
        return None


def remember_schema(ref: TableRef, schema: Schema) -> None:
    """Record ``schema`` as the one observed for ``ref`` (atomically replacing the file)."""
    path = schemas_file()
    data = _load()
    data[str(ref)] = [[c.name, str(c.dtype), c.nullable] for c in schema]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".observed_schemas")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # only the Columns section is lost; the observation itself is recorded by Dagster
