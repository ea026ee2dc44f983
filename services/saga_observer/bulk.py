"""A batch's rows in few statements, past SQLAlchemy's per-row parameter handling.

The hot writes of a batch (its events, its flows' rows and verdicts, its
outbox) go to the driver as plain tuples: on SQLite one ``executemany`` per
table (one compiled statement stepped per row, all in C), on PostgreSQL **one
statement per table and batch**, the columns sent as arrays and turned back
into rows by ``unnest`` (one round trip, and ``RETURNING`` tells which rows a
conflict skipped). SQLAlchemy's own ``executemany`` builds and processes a
parameter dict per row, which cost about as much CPU as the database's work.

The statements still go through the connection (``exec_driver_sql``), so they
belong to the batch's transaction and SQLAlchemy's event hooks see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, String, Table
from sqlalchemy.ext.asyncio import AsyncConnection

_ARRAY_OF = ((BigInteger, "int8[]"), (Integer, "int4[]"), (Boolean, "bool[]"), (String, "text[]"))
"""Array types by column type, most specific first (``Text`` is a ``String``)."""


async def insert_rows(
    conn: AsyncConnection,
    table: Table,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    conflict: str = "DO NOTHING",
    returning: str | None = None,
) -> list[Any]:
    """Insert ``rows`` into ``table``; return the ``returning`` column of those inserted.

    Args:
        conn: The batch's connection, in its transaction.
        table: Where.
        columns: The columns each row holds, in order.
        rows: The rows, as tuples.
        conflict: What ``ON CONFLICT`` does (``"(id) DO NOTHING"``).
        returning: A column whose values of the inserted rows (those no conflict
            skipped) are returned; PostgreSQL only (SQLite's ``executemany`` returns no rows).
    """
    if not rows:
        return []
    postgres = conn.dialect.name == "postgresql"
    if returning is not None and not postgres:
        raise ValueError("insert_rows(returning=...) needs PostgreSQL")
    sql = _insert_sql(table, columns, conflict, returning, postgres=postgres)
    if not postgres:
        await conn.exec_driver_sql(sql, list(rows))
        return []
    result = await conn.exec_driver_sql(sql, _arrays(rows, len(columns)))
    return list(result.scalars()) if returning is not None else []


async def update_rows(
    conn: AsyncConnection,
    table: Table,
    key: str,
    columns: tuple[str, ...],
    rows: Sequence[tuple[Any, ...]],
    *,
    also: str = "",
) -> None:
    """Set ``columns`` of the rows of ``table`` whose ``key`` each tuple gives.

    Args:
        conn: The batch's connection, in its transaction.
        table: Where.
        key: The column that finds a row (its primary key).
        columns: The columns to set.
        rows: Tuples: the key's value, then the values of ``columns`` in order.
        also: More assignments, in SQL, the same for every row (``"version = version + 1"``).
    """
    if not rows:
        return
    postgres = conn.dialect.name == "postgresql"
    sql = _update_sql(table, key, columns, also, postgres=postgres)
    if postgres:
        await conn.exec_driver_sql(sql, _arrays(rows, len(columns) + 1))
    else:
        await conn.exec_driver_sql(sql, [(*row[1:], row[0]) for row in rows])


def _arrays(rows: Sequence[tuple[Any, ...]], width: int) -> tuple[list[Any], ...]:
    columns = tuple(list(column) for column in zip(*rows, strict=True))
    if len(columns) != width:
        raise ValueError(f"rows of {len(columns)} values for {width} columns")
    return columns


@cache
def _insert_sql(
    table: Table, columns: tuple[str, ...], conflict: str, returning: str | None, *, postgres: bool
) -> str:
    names = ", ".join(columns)
    if postgres:
        arrays = ", ".join(f"${i}::{_array_type(table, c)}" for i, c in enumerate(columns, 1))
        sql = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608 - names from our Table
    else:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608 - names from our Table
    sql += f" ON CONFLICT {conflict}"
    return sql + (f" RETURNING {returning}" if returning else "")


@cache
def _update_sql(
    table: Table, key: str, columns: tuple[str, ...], also: str, *, postgres: bool
) -> str:
    extra = f", {also}" if also else ""
    if not postgres:
        assignments = ", ".join(f"{c} = ?" for c in columns)
        return f"UPDATE {table.name} SET {assignments}{extra} WHERE {key} = ?"  # noqa: S608 - names from our Table
    every = (key, *columns)
    arrays = ", ".join(f"${i}::{_array_type(table, c)}" for i, c in enumerate(every, 1))
    assignments = ", ".join(f"{c} = u.{c}" for c in columns)
    return (
        f"UPDATE {table.name} SET {assignments}{extra} "  # noqa: S608 - names from our Table
        f"FROM unnest({arrays}) AS u({', '.join(every)}) WHERE {table.name}.{key} = u.{key}"
    )


def _array_type(table: Table, column: str) -> str:
    kind = table.c[column].type
    for sql_type, array in _ARRAY_OF:
        if isinstance(kind, sql_type):
            return array
    raise TypeError(f"no array type for {table.name}.{column} ({kind!r})")
