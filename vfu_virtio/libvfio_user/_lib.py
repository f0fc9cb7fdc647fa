"""Mirror of ``libvfio-user.h`` (API 0.1, revision PINNED_REVISION): constants, structs, prototypes.

Loader order: ``$LIBVFIO_USER_SO`` (a path), then the project's build ``.vmkit/lib/libvfio-user.so.0``
(``scripts/setup`` builds it). The library must be the build this binding was written for: revision
``PINNED_REVISION`` with the project's patch ``native/libvfio-user-hostile-peers.patch`` applied (fd-backed DMA
regions only, EEXIST for a map over a mapped range, no fd leaks, messages assembled from pieces; decision
TD-DMA-FD). The build writes ``libvfio-user.commit`` beside the library (:data:`BUILD_STAMP`: the revision, ``+``,
the first 16 hex digits of the patch's sha256) and :func:`load_library` refuses any other.
"""
from __future__ import annotations

import ctypes as C
import os
from pathlib import Path

PINNED_REVISION = "0b28d205572c80b568a1003db2c8f37ca333e4d7"
#: sha256 of native/libvfio-user-hostile-peers.patch, first 16 hex digits (a test keeps it equal to the file's)
PATCH_SHA256_16 = "b7447fc9e87d1122"
#: the line native/libvfio-user.sh writes to libvfio-user.commit
BUILD_STAMP = f"{PINNED_REVISION}+{PATCH_SHA256_16}"

# vfu_trans_t, vfu_dev_type_t, flags
VFU_TRANS_SOCK = 0
VFU_DEV_TYPE_PCI = 0
LIBVFIO_USER_FLAG_ATTACH_NB = 1 << 0

# vfu_pci_type_t, header type
VFU_PCI_TYPE_CONVENTIONAL = 0
VFU_PCI_TYPE_EXPRESS = 3
PCI_HEADER_TYPE_NORMAL = 0

# region indexes (enum in libvfio-user.h)
VFU_PCI_DEV_BAR0_REGION_IDX = 0
VFU_PCI_DEV_BAR1_REGION_IDX = 1
VFU_PCI_DEV_BAR2_REGION_IDX = 2
VFU_PCI_DEV_BAR3_REGION_IDX = 3
VFU_PCI_DEV_BAR4_REGION_IDX = 4
VFU_PCI_DEV_BAR5_REGION_IDX = 5
VFU_PCI_DEV_ROM_REGION_IDX = 6
VFU_PCI_DEV_CFG_REGION_IDX = 7
VFU_PCI_DEV_NUM_REGIONS = 10

VFU_REGION_FLAG_READ = 1 << 0
VFU_REGION_FLAG_WRITE = 1 << 1
VFU_REGION_FLAG_RW = VFU_REGION_FLAG_READ | VFU_REGION_FLAG_WRITE
VFU_REGION_FLAG_MEM = 1 << 2  # without it the BAR is presented as an I/O BAR
VFU_REGION_FLAG_ALWAYS_CB = 1 << 3

VFU_CAP_FLAG_EXTENDED = 1 << 0
VFU_CAP_FLAG_CALLBACK = 1 << 1
VFU_CAP_FLAG_READONLY = 1 << 2

# vfu_reset_type_t
VFU_RESET_DEVICE = 0
VFU_RESET_LOST_CONN = 1
VFU_RESET_PCI_FLR = 2

# enum vfu_dev_irq_type
VFU_DEV_INTX_IRQ = 0
VFU_DEV_MSI_IRQ = 1
VFU_DEV_MSIX_IRQ = 2
VFU_DEV_ERR_IRQ = 3
VFU_DEV_REQ_IRQ = 4

PCI_CFG_SPACE_SIZE = 256
PCI_CAP_ID_VNDR = 0x09
PCI_CAP_ID_MSIX = 0x11

# syslog levels used by vfu_setup_log / the log callback
LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 3, 4, 5, 6, 7


class iovec(C.Structure):
    _fields_ = [("iov_base", C.c_void_p), ("iov_len", C.c_size_t)]


class vfu_dma_info_t(C.Structure):
    """``struct vfu_dma_info``: iova (guest range), vaddr (our mapping of it or NULL), mapping, page_size, prot."""

    _fields_ = [
        ("iova", iovec),
        ("vaddr", C.c_void_p),
        ("mapping", iovec),
        ("page_size", C.c_size_t),
        ("prot", C.c_uint32),
    ]


vfu_ctx_p = C.c_void_p
vfu_log_fn_t = C.CFUNCTYPE(None, vfu_ctx_p, C.c_int, C.c_char_p)
vfu_region_access_cb_t = C.CFUNCTYPE(C.c_ssize_t, vfu_ctx_p, C.POINTER(C.c_char), C.c_size_t, C.c_int64, C.c_bool)
vfu_reset_cb_t = C.CFUNCTYPE(C.c_int, vfu_ctx_p, C.c_int)
vfu_dma_register_cb_t = C.CFUNCTYPE(None, vfu_ctx_p, C.POINTER(vfu_dma_info_t))
vfu_dma_unregister_cb_t = C.CFUNCTYPE(None, vfu_ctx_p, C.POINTER(vfu_dma_info_t))
vfu_dev_irq_state_cb_t = C.CFUNCTYPE(None, vfu_ctx_p, C.c_uint32, C.c_uint32, C.c_bool)

_PROTOTYPES = {
    "vfu_create_ctx": (vfu_ctx_p, [C.c_int, C.c_char_p, C.c_int, C.c_void_p, C.c_int]),
    "vfu_realize_ctx": (C.c_int, [vfu_ctx_p]),
    "vfu_attach_ctx": (C.c_int, [vfu_ctx_p]),
    "vfu_get_poll_fd": (C.c_int, [vfu_ctx_p]),
    "vfu_run_ctx": (C.c_int, [vfu_ctx_p]),
    "vfu_destroy_ctx": (None, [vfu_ctx_p]),
    "vfu_setup_log": (C.c_int, [vfu_ctx_p, vfu_log_fn_t, C.c_int]),
    "vfu_setup_region": (C.c_int, [vfu_ctx_p, C.c_int, C.c_size_t, vfu_region_access_cb_t, C.c_int,
                                   C.POINTER(iovec), C.c_uint32, C.c_int, C.c_uint64]),
    "vfu_setup_device_reset_cb": (C.c_int, [vfu_ctx_p, vfu_reset_cb_t]),
    # the pinned revision's 3-argument form (upstream later dropped nothing here, but changed semantics)
    "vfu_setup_device_dma": (C.c_int, [vfu_ctx_p, vfu_dma_register_cb_t, vfu_dma_unregister_cb_t]),
    "vfu_setup_device_nr_irqs": (C.c_int, [vfu_ctx_p, C.c_int, C.c_uint32]),
    "vfu_setup_irq_state_callback": (C.c_int, [vfu_ctx_p, C.c_int, vfu_dev_irq_state_cb_t]),
    "vfu_irq_trigger": (C.c_int, [vfu_ctx_p, C.c_uint32]),
    "vfu_pci_init": (C.c_int, [vfu_ctx_p, C.c_int, C.c_int, C.c_int]),
    "vfu_pci_set_id": (None, [vfu_ctx_p, C.c_uint16, C.c_uint16, C.c_uint16, C.c_uint16]),
    "vfu_pci_set_class": (None, [vfu_ctx_p, C.c_uint8, C.c_uint8, C.c_uint8]),
    "vfu_pci_get_config_space": (C.c_void_p, [vfu_ctx_p]),
    "vfu_pci_add_capability": (C.c_ssize_t, [vfu_ctx_p, C.c_size_t, C.c_int, C.c_void_p]),
}


class LibraryNotFound(RuntimeError):
    """libvfio-user could not be loaded or is not the pinned revision."""


def _candidates() -> list[Path]:
    out = []
    env = os.environ.get("LIBVFIO_USER_SO")
    if env:
        out.append(Path(env))
    top = Path(__file__).resolve().parents[2]
    out.append(top / ".vmkit" / "lib" / "libvfio-user.so.0")
    return out


_LIB: C.CDLL | None = None


def load_library() -> C.CDLL:
    """Load libvfio-user once and declare every prototype used by the binding.

    Raises :class:`LibraryNotFound` naming the paths tried, or the build found if it is not :data:`BUILD_STAMP`
    (read from ``libvfio-user.commit`` beside the library).
    """
    global _LIB
    if _LIB is not None:
        return _LIB
    tried = []
    for path in _candidates():
        tried.append(str(path))
        if not path.exists():
            continue
        stamp = path.parent / "libvfio-user.commit"
        rev = stamp.read_text().strip() if stamp.exists() else "unknown (no libvfio-user.commit beside it)"
        if rev != BUILD_STAMP:
            raise LibraryNotFound(f"{path} is libvfio-user build {rev}; this binding is written for {BUILD_STAMP} "
                                  f"(revision + the project's patch; rebuild with scripts/setup)")
        lib = C.CDLL(str(path), use_errno=True)
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        _LIB = lib
        return lib
    raise LibraryNotFound("libvfio-user.so.0 not found (tried: " + ", ".join(tried)
                          + "); run scripts/setup or set LIBVFIO_USER_SO")
