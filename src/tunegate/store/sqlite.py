"""Where the store's names used to live; kept so ``from tunegate.store.sqlite import Store`` still works.

The store now opens SQLite or PostgreSQL by URL (:mod:`tunegate.store.base`); this module only
re-exports its public names for the many callers and plugins that import them from here.
"""

from __future__ import annotations

from tunegate.store.base import RowRecord, RunRecord, Store
from tunegate.store.clock import now
from tunegate.store.url import default_db_path, tunegate_home

__all__ = ["RowRecord", "RunRecord", "Store", "default_db_path", "now", "tunegate_home"]
