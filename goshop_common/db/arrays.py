"""Rows bound as one array per column: ``unnest(:a, :b, ...) AS alias(a, b,
...)``. A statement built on it is compiled once and keeps the same text
whatever the number of rows, where a multi-row VALUES is a new statement
for each count; the consumers' batch statements are built this way."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY


def array_rows(alias: str, columns: dict[str, sa.types.TypeEngine[Any]], prefix: str) -> sa.TableValuedAlias:
    """The rows of arrays bound as ``<prefix><column>``, one per column of
    ``columns`` (name: type), as the table ``alias``."""
    arrays = (sa.bindparam(f"{prefix}{name}", type_=ARRAY(type_)) for name, type_ in columns.items())
    return sa.func.unnest(*arrays).table_valued(*columns).render_derived(alias)


def array_values(rows: Sequence[Mapping[str, Any]], columns: Iterable[str], prefix: str) -> dict[str, list[Any]]:
    """``rows`` (dicts by column name) as array_rows binds them."""
    return {f"{prefix}{name}": [row[name] for row in rows] for name in columns}
