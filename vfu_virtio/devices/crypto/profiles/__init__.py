"""The crypto profiles a device can be made with: the built-in registry and plug-in modules.

Built-in profiles are one module each in this package, registered in :data:`PROFILES`: ``standard`` (the
published standard, the default), ``v16`` (the v16 crypto patch) and ``asym-rfc3`` (v16 plus the ASYM RFC v3).
Further profiles come from the modules named in the environment variable ``VFU_VIRTIO_CRYPTO_PROFILES``
(comma-separated importable module names, each exposing ``PROFILE``, a :class:`~..profile.Profile`), read whenever
:func:`available` or :func:`get` is called.
"""
from __future__ import annotations

import importlib
import os

from ..profile import Profile
from . import asym_rfc3, standard, v16

#: Environment variable naming plug-in profile modules (comma-separated).
ENV = "VFU_VIRTIO_CRYPTO_PROFILES"
#: The profile a new device instance gets.
DEFAULT = "standard"

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (standard.PROFILE, v16.PROFILE, asym_rfc3.PROFILE)}


def available() -> dict[str, Profile]:
    """Built-in and plug-in profiles by name.

    Raises ValueError (one line naming the module and ``VFU_VIRTIO_CRYPTO_PROFILES``) for a module that does not
    import, has no ``PROFILE`` of type :class:`~..profile.Profile`, or reuses a name already taken.
    """
    found = dict(PROFILES)
    for module_name in filter(None, (m.strip() for m in os.environ.get(ENV, "").split(","))):
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # noqa: BLE001 - any failure of a plug-in is a configuration error
            raise ValueError(f"{ENV}: crypto profile module {module_name!r} does not import: {e!r}") from None
        profile = getattr(module, "PROFILE", None)
        if not isinstance(profile, Profile):
            raise ValueError(f"{ENV}: module {module_name!r} has no PROFILE (a crypto Profile)")
        if profile.name in found:
            raise ValueError(f"{ENV}: module {module_name!r} names its profile {profile.name!r}, which is taken")
        found[profile.name] = profile
    return found


def get(name: str) -> Profile:
    """The profile called ``name``; ValueError naming the available ones if there is none."""
    profiles = available()
    try:
        return profiles[name]
    except KeyError:
        raise ValueError(f"no crypto profile {name!r} (available: {', '.join(sorted(profiles))})") from None
