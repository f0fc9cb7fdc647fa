"""The crash-safe persistent state store shared by every device (one SQLite file, a guard file beside it).

:mod:`.store` -- :class:`Store` (file, schema, the device kinds' tables, transactions, guard file),
:class:`Namespace` (one device instance, exclusively locked; key/value configuration), :class:`StoreReader` (a
read-only look for ``vfu-virtio info``), errors. What a kind
keeps beyond its configuration lives with the kind (RPMB: ``vfu_virtio.devices.rpmb.persist``); this package
imports nothing of ``vfu_virtio.devices``.
"""
from .store import (InstanceRecord, Namespace, Store, StoreError, StoreLocked, StoreReader, StoreRolledBack,
                    open_namespace)

__all__ = ["InstanceRecord", "Namespace", "Store", "StoreError", "StoreLocked", "StoreReader", "StoreRolledBack",
           "open_namespace"]
