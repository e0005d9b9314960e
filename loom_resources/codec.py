"""Loss-free JSON encoding of the table model (specs, predicates, data types).

What the IO manager needs about an asset travels on the asset definition as JSON metadata
(Dagster keeps only serializable metadata values), so the model's frozen dataclasses, enums
and literal values must survive a round trip through JSON exactly. Hand-written because the
model is plain dataclasses: pydantic/serdes would need a parallel schema of every class.
Only classes of the ``loom_resources`` package are decoded, so a crafted payload cannot
instantiate arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import functools
import importlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["decode", "dumps", "encode", "loads"]

_PACKAGE = "loom_resources."


def encode(obj: Any) -> Any:
    """``obj`` as JSON-compatible data, with type tags where JSON has no type of its own."""
    if obj is None or isinstance(obj, (bool, int, float, str)) and not isinstance(obj, enum.Enum):
        return obj
    if isinstance(obj, enum.Enum):
        return {"$enum": _name(type(obj)), "v": obj.value}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        name, names = _dataclass_fields(type(obj))
        return {"$dc": name, "f": {n: encode(getattr(obj, n)) for n in names}}
    if isinstance(obj, tuple):
        return {"$tuple": [encode(v) for v in obj]}
    if isinstance(obj, list):
        return [encode(v) for v in obj]
    if isinstance(obj, Mapping):
        return {"$map": [[encode(k), encode(v)] for k, v in obj.items()]}
    if isinstance(obj, dt.datetime):
        return {"$datetime": obj.isoformat()}
    if isinstance(obj, dt.date):
        return {"$date": obj.isoformat()}
    if isinstance(obj, dt.time):
        return {"$time": obj.isoformat()}
    if isinstance(obj, dt.timedelta):
        return {"$timedelta": [obj.days, obj.seconds, obj.microseconds]}
    if isinstance(obj, decimal.Decimal):
        return {"$decimal": str(obj)}
    if isinstance(obj, bytes):
        return {"$bytes": obj.hex()}
    raise TypeError(f"cannot encode {type(obj).__name__} value {obj!r} as table-model JSON")


def decode(data: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    if "$dc" in data:
        cls = _resolve(data["$dc"])
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"refusing to decode {data['$dc']!r}: not a table-model dataclass")
        return cls(**{k: decode(v) for k, v in data["f"].items()})
    if "$enum" in data:
        cls = _resolve(data["$enum"])
        if not issubclass(cls, enum.Enum):
            raise ValueError(f"refusing to decode {data['$enum']!r}: not a table-model enum")
        return cls(data["v"])
    if "$tuple" in data:
        return tuple(decode(v) for v in data["$tuple"])
    if "$map" in data:
        return {decode(k): decode(v) for k, v in data["$map"]}
    tag, value = next(iter(data.items()))
    parsers: dict[str, Any] = {
        "$datetime": dt.datetime.fromisoformat, "$date": dt.date.fromisoformat, "$time": dt.time.fromisoformat,
        "$decimal": decimal.Decimal, "$bytes": bytes.fromhex,
        "$timedelta": lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    }
    if tag not in parsers:
        raise ValueError(f"unknown table-model JSON tag {tag!r}")
    return parsers[tag](value)


def dumps(obj: Any) -> str:
    """``obj`` as a JSON string."""
    return json.dumps(encode(obj), sort_keys=True)


def loads(text: str) -> Any:
    """The object of a :func:`dumps` string."""
    return decode(json.loads(text))


@functools.cache
def _dataclass_fields(cls: type) -> tuple[str, tuple[str, ...]]:
    """A model dataclass's tag and the names of its init fields, worked out once per class (every
    code-location load encodes a few hundred bindings of the same dozen classes)."""
    return _name(cls), tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _name(cls: type) -> str:
    if not cls.__module__.startswith(_PACKAGE):
        raise TypeError(f"cannot encode {cls.__module__}.{cls.__qualname__}: not a loom_resources class")
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str) -> type:
    """The class ``module:QualName``, only when it is a class defined in ``loom_resources``."""
    module, _, qual = name.partition(":")
    if not module.startswith(_PACKAGE):
        raise ValueError(f"refusing to decode class {name!r}: not a loom_resources class")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type) or not obj.__module__.startswith(_PACKAGE) or obj.__qualname__ != qual:
        raise ValueError(f"refusing to decode {name!r}: not a class of loom_resources")
    return obj
