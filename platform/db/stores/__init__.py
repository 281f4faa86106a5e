"""Store layer: one module per aggregate; functions take a Session and return entities."""
# No `from __future__ import annotations` here: it would bind the name `annotations`, hiding the store module.
import zlib
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from segloop.platform.core.errors import NotFoundError
from segloop.platform.core.specs import MAX_INT, MIN_INT

SQL_CHUNK = 900  # ids per SQL IN list (SQLite allows 999 bound parameters per statement)
MIN_ID, MAX_ID = MIN_INT, MAX_INT  # an id outside a 64-bit integer cannot exist (and would overflow the driver)

ADVISORY_NAMESPACE = 0x5E6101  # the first key of segloop's two-key PostgreSQL advisory locks

__all__ = ["MAX_ID", "MIN_ID", "SQL_CHUNK", "get_row", "id_chunks", "lock_keys"]


def lock_keys(session: Session, *keys: str) -> None:
    """Serialise this transaction with every other one that locks any of `keys` (PostgreSQL advisory locks, taken in
    one global order and held to the transaction's end; SQLite's write transactions are serial already)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    from sqlalchemy import text

    for key in sorted(set(keys)):
        number = zlib.crc32(key.encode("utf-8")) - (1 << 31)  # a signed 32-bit second key
        session.execute(text("SELECT pg_advisory_xact_lock(:space, :key)"),
                        {"space": ADVISORY_NAMESPACE, "key": number})


def id_chunks(ids: Sequence[int]) -> list[list[int]]:
    """The ids as ints, in chunks small enough for an SQL IN list."""
    ids = [int(i) for i in ids]
    return [ids[i:i + SQL_CHUNK] for i in range(0, len(ids), SQL_CHUNK)]


def get_row(session: Session, model: type, row_id: int, what: str, **options: Any) -> Any:
    """The ORM row of `model` with this id, or NotFoundError "<what> <id> does not exist"."""
    if isinstance(row_id, bool) or not isinstance(row_id, int) or not MIN_ID <= row_id <= MAX_ID:
        raise NotFoundError(f"{what} {row_id} does not exist")
    row = session.get(model, row_id, **options)
    if row is None:
        raise NotFoundError(f"{what} {row_id} does not exist")
    return row
