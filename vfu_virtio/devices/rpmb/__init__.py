"""virtio-rpmb (virtio device id 28), the published virtio standard's "RPMB Device", and its :data:`KIND`.

``request`` (chain bytes -> request values), ``device`` (:class:`RpmbDevice`: config space, check order,
execution), ``persist`` (the store tables and :class:`~.persist.RpmbState`: key, write counter, data blocks).
The frame layout, constants and MACs both sides need are in ``vfu_virtio.abi.rpmb``; the host-side client is
``vfu_virtio.client.rpmb``.

:data:`KIND` registers it (``vfu_virtio.devices.registry``): ``vfu-virtio rpmb`` with ``--capacity`` (fixed
when the instance is created: an RPMB partition never changes size), ``--max-wr-cnt`` and ``--max-rd-cnt``.
"""
from __future__ import annotations

from vfu_virtio.abi.rpmb import MAX_CAPACITY, VIRTIO_ID_RPMB
from vfu_virtio.devices.registry import DeviceKind, Option
from vfu_virtio.store import Namespace

from .device import MAX_LIMIT, RpmbDevice
from .persist import TABLES, RpmbState, inspect

__all__ = ["KIND", "RpmbDevice"]


def _build(ns: Namespace, **settings) -> RpmbDevice:
    """An :class:`RpmbDevice` on the persistent state of ``ns`` (its close releases ``ns``)."""
    return RpmbDevice(RpmbState.open(ns), **settings)


KIND = DeviceKind(
    name="rpmb",
    virtio_id=VIRTIO_ID_RPMB,
    pci_class=(0x00, 0xFF, 0x00),  # class 0x00ff00, as QEMU's virtio devices without a class of their own
    summary="virtio-rpmb: authenticated, replay-protected blocks; key, write counter and data persist in the store",
    factory=_build,
    options=(
        Option("--capacity", "capacity", "Data area in 128 KiB units (128 = 16 MiB).", 1, range=(1, MAX_CAPACITY),
               unit="x 128 KiB", fixed=True),
        Option("--max-wr-cnt", "max_wr_cnt", "max_wr_cnt: most 256-byte blocks per write request, 0 = no limit.",
               1, range=(0, MAX_LIMIT), unit="256-byte blocks"),
        Option("--max-rd-cnt", "max_rd_cnt", "max_rd_cnt: most 256-byte blocks per read request, 0 = no limit.",
               1, range=(0, MAX_LIMIT), unit="256-byte blocks"),
    ),
    store_tables=TABLES,
    client_module="vfu_virtio.client.rpmb",
    guest_attachable=True,
    inspect=inspect,
)
