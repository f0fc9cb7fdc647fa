"""ctypes binding of libvfio-user (the revision pinned in native/libvfio-user.sh) and nothing more.

``_lib`` mirrors the C header (constants, structs, prototypes); ``context`` wraps a ``vfu_ctx_t`` so
Python callbacks never unwind through C and errno becomes :class:`VfuError`.
"""
from ._lib import PINNED_REVISION, load_library
from .context import VfuContext, VfuError

__all__ = ["PINNED_REVISION", "VfuContext", "VfuError", "load_library"]
