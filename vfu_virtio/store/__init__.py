"""The crash-safe persistent state store shared by every device (one SQLite file, a guard file beside it).

:mod:`.store` -- :class:`Store` (file, schema, transactions, guard file), :class:`Namespace` (one device
instance, exclusively locked; key/value configuration), errors. :mod:`.rpmb` -- :class:`RpmbState` (RPMB
key, write counter, data blocks; single-transaction authenticated writes; anti-rollback check).
"""
from .rpmb import RpmbState
from .store import (Namespace, Store, StoreError, StoreLocked, StoreRolledBack, open_namespace)

__all__ = ["Namespace", "RpmbState", "Store", "StoreError", "StoreLocked", "StoreRolledBack", "open_namespace"]
