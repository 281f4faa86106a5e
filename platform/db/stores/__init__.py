"""Store layer: one module per aggregate; functions take a Session and return entities."""
# No `from __future__ import annotations` here: it would bind the name `annotations`, hiding the store module.
from collections.abc import Sequence

SQL_CHUNK = 900  # ids per SQL IN list (SQLite allows 999 bound parameters per statement)

__all__ = ["SQL_CHUNK", "id_chunks"]


def id_chunks(ids: Sequence[int]) -> list[list[int]]:
    """The ids as ints, in chunks small enough for an SQL IN list."""
    ids = [int(i) for i in ids]
    return [ids[i:i + SQL_CHUNK] for i in range(0, len(ids), SQL_CHUNK)]
