"""What a backend can do, declared by its resource so declarations fail at load, not at run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from loom_resources.errors import SpecError
from loom_resources.model import TargetSpec, WriteMode

__all__ = ["Capabilities"]


@dataclass(frozen=True)
class Capabilities:
    """The write modes and options a backend supports.

    Attributes:
        write_modes: Modes the writer implements.
        delete_unmatched: ``merge`` may delete target rows the frame lacks.
        sql_dialect: The dialect SQL bodies are bound in when every source lives in this backend
            and the SQL runs inside it; ``None``: SQL runs in Polars.
        reserved_schemas: Schemas (databases) user tables must not be declared in, whatever
            their case: ``SYSTEM.x`` is refused as ``system.x`` is (a case-insensitive file
            system or server would put both in one place).
    """

    write_modes: frozenset[WriteMode]
    delete_unmatched: bool = False
    sql_dialect: Literal["clickhouse"] | None = None
    reserved_schemas: frozenset[str] = frozenset()

    def check(self, spec: TargetSpec, backend: str) -> None:
        """Raise :class:`SpecError` naming the table and the mode or option the backend lacks."""
        if spec.mode not in self.write_modes:
            supported = sorted(m.value for m in self.write_modes)
            raise SpecError(
                f"table {spec.ref}: write mode {spec.mode.value!r} is not supported by the {backend} backend "
                f"(supported: {supported})"
            )
        if spec.ref.schema.casefold() in {s.casefold() for s in self.reserved_schemas}:
            raise SpecError(f"table {spec.ref}: schema {spec.ref.schema!r} is reserved by the {backend} backend")
        if spec.delete_unmatched and not self.delete_unmatched:
            raise SpecError(f"table {spec.ref}: delete_unmatched is not supported by the {backend} backend")
