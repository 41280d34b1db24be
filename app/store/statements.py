"""The hot path's statements: written in SQLAlchemy Core, compiled once, sent by psycopg.

A no-op run sends four statements (lock, state, insert, finish). Through
``Connection.execute`` each pays for an execution context and a result wrapper,
which cost more than the round trip itself on a local server. Here the same Core
statement is compiled once, at import, to the SQL SQLAlchemy would send; the
caller runs it on a pooled connection's psycopg cursor (`app.store.driver`).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg.rows import RowMaker
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy


class CompiledStatement:
    """SQL text with %(name)s placeholders, the values the statement itself binds, and
    the named-tuple type of its rows.

    The row type is made from the first result's column names and kept: psycopg's
    own namedtuple_row reads the result description again for every statement.
    """

    __slots__ = ("_make_row", "fixed", "sql")

    def __init__(self, sql: str, fixed: Mapping[str, Any]) -> None:
        self.sql = sql
        self.fixed = fixed
        self._make_row: RowMaker[Any] | None = None

    def __repr__(self) -> str:
        return f"CompiledStatement({self.sql!r})"

    def row_maker(self, cursor: psycopg.Cursor[Any]) -> RowMaker[Any]:
        """psycopg row factory: this statement's rows as named tuples."""
        make = self._make_row
        if make is None:
            if cursor.description is None:  # no rows to make (yet): keep nothing
                return tuple
            names = [column.name for column in cursor.description]
            # rename: a column that is no Python name (`?column?`) becomes `_<position>`
            row_type: Any = namedtuple("Row", names, rename=True)  # type: ignore[misc]
            make = self._make_row = row_type._make
        return make


def compile_statement(statement: ClauseElement, *, keys: Sequence[str] = ()) -> CompiledStatement:
    """Compile `statement` for psycopg; `keys` are the columns an INSERT takes as parameters."""
    compiled = statement.compile(dialect=_DIALECT, column_keys=list(keys) or None)
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"not a SQL statement: {statement!r}")
    fixed = {
        name: value
        for name, value in compiled.params.items()
        if value is not None and not compiled.binds[name].required
    }
    return CompiledStatement(str(compiled), fixed)
