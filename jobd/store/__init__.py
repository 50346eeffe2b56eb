"""The durable job store: its contract (`contract`) and SQL implementation (`sql`).

`open_store` is the one place that picks the implementation; importing this
package does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobd.store.contract import Store


def open_store(
    url: str, *, timeout: float = 30.0, sqlite_synchronous: str = "normal", create: bool = False
) -> Store:
    """The store for `url`; a SQLite file is created only by `upgrade()` or `create=True`."""
    from jobd.store.sql import SQLStore

    return SQLStore(url, timeout=timeout, sqlite_synchronous=sqlite_synchronous, create=create)
