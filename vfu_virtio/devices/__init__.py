"""Device personalities (one folder each: config layout, request codec, handler) and their factories.

``DEVICE_KINDS[name](state=..., instance=..., **options)`` builds a ready
:class:`~vfu_virtio.virtio.device.VirtioDevice`; the CLI and the QEMU harness use these.
"""


def make_crypto(state: str, instance: str = "0", **options):
    """A virtio-crypto device (id 20); ``options`` are CryptoDevice's keyword arguments.

    The device holds the store namespace ``("crypto", instance)`` of ``state`` (locked until it closes;
    :class:`vfu_virtio.store.StoreLocked` if another process serves it) and keeps its configuration
    there: options left out or None take the stored values, so a restarted device presents the same
    configuration space.
    """
    from vfu_virtio.store import open_namespace

    from .crypto import CryptoDevice
    ns = open_namespace(state, "crypto", instance)
    try:
        config = ns.merge_config(options)
        device = CryptoDevice(**config)
        ns.save_config(config)
    except BaseException:
        ns.close()
        raise
    device_close = device.close

    def close() -> None:
        try:
            device_close()
        finally:
            ns.close()
    device.close = close
    return device


def make_rpmb(state: str, instance: str = "0", **options):
    """A virtio-rpmb device (id 28) on store namespace ``("rpmb", instance)`` of ``state``.

    ``options``: ``capacity`` (128 KiB units, 1..128), ``max_wr_cnt``, ``max_rd_cnt`` (256-byte blocks,
    0..255, 0 = no limit); None or left out = the stored value, else the device default (1 each). The
    capacity is fixed when the instance is created: another value later is refused (ValueError), since
    an RPMB partition never changes size. Raises :class:`vfu_virtio.store.StoreError` subclasses for a
    locked or rolled-back store.
    """
    from vfu_virtio.store import RpmbState, open_namespace

    from .rpmb import RpmbDevice
    ns = open_namespace(state, "rpmb", instance)
    try:
        stored = ns.config().get("capacity")
        given = options.get("capacity")
        if None not in (stored, given) and stored != given:
            raise ValueError(f"state store {ns.store.path}: rpmb instance {instance!r} has capacity {stored} "
                             f"(x 128 KiB); it cannot become {given}")
        config = ns.merge_config(options)
        device = RpmbDevice(RpmbState.open(ns), **config)
        ns.save_config({"capacity": device.capacity, "max_wr_cnt": device.max_wr_cnt,
                        "max_rd_cnt": device.max_rd_cnt})
    except BaseException:
        ns.close()
        raise
    return device


DEVICE_KINDS = {"crypto": make_crypto, "rpmb": make_rpmb}
