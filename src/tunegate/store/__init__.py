"""The store: SQLite by default, PostgreSQL by URL (see DESIGN.md section 2 and docs/scale-out.md)."""

from tunegate.store.base import RowRecord, RunRecord, Store
from tunegate.store.connection import Connection, Cursor
from tunegate.store.url import StoreURL, default_target, parse_store_url, store_exists

__all__ = ["Connection", "Cursor", "RowRecord", "RunRecord", "Store", "StoreURL", "default_target",
           "parse_store_url", "store_exists"]
