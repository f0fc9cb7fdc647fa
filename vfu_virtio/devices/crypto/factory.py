"""A crypto device on its store namespace: the stored configuration rule and the fixed profile.

The device holds the store namespace ``("crypto", instance)`` (locked until it closes) and keeps its configuration
there, so a restarted instance presents the same configuration space and speaks the same profile.
"""
from __future__ import annotations

from vfu_virtio.store import open_namespace

from . import profiles
from .device import CryptoDevice

#: The stored options: CryptoDevice's keyword arguments.
OPTIONS = ("max_dataqueues", "max_sessions", "max_size", "max_cipher_key_len", "max_auth_key_len", "profile",
           "bulk_threshold")


def _effective(device: CryptoDevice) -> dict[str, int | str]:
    limits = device.limits
    return {"max_dataqueues": device.max_dataqueues, "max_sessions": device.sessions.max_sessions,
            "max_size": limits.max_size, "max_cipher_key_len": limits.max_cipher_key_len,
            "max_auth_key_len": limits.max_auth_key_len, "profile": device.profile.name,
            "bulk_threshold": device.bulk_threshold}


def make_crypto(state: str, instance: str = "0", **options: int | str | None) -> CryptoDevice:
    """A :class:`CryptoDevice` on store namespace ``("crypto", instance)`` of the store file ``state``.

    ``options`` are CryptoDevice's keyword arguments (:data:`OPTIONS`; ``profile`` a name, ``bulk_threshold`` in
    bytes). A value given (not None) wins and is stored; an option left out or None takes the stored value, else the
    device default. ``profile`` is fixed when the instance is created (an instance stored before profiles existed is
    a "standard" one): another profile later is refused with a one-line ValueError naming both. Other errors:
    ValueError for a value out of range or an unknown profile, TypeError for an unknown option,
    :class:`vfu_virtio.store.StoreError` subclasses for a locked or rolled-back store. The device's ``close``
    also closes the namespace.
    """
    ns = open_namespace(state, "crypto", instance)
    try:
        stored = ns.config()
        if stored:
            kept = stored.get("profile", profiles.DEFAULT)
            given = options.get("profile")
            if given is not None and given != kept:
                raise ValueError(f"state store {ns.store.path}: crypto instance {instance!r} has profile {kept!r}; "
                                 f"it cannot be served with profile {given!r}")
            stored = {**stored, "profile": kept}
        config = {name: stored[name] for name in OPTIONS if name in stored}
        config.update((name, value) for name, value in options.items() if value is not None)
        device = CryptoDevice(**config)
        ns.save_config(_effective(device))
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
