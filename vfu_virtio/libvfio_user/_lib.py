"""Mirror of ``libvfio-user.h`` (API 0.1, revision PINNED_REVISION): constants, structs, prototypes.

Loader (:func:`locate`): ``$LIBVFIO_USER_SO`` (a path), ``$VMKIT/lib``, the source tree's ``.vmkit/lib``
(``scripts/setup`` builds it there), ``$LD_LIBRARY_PATH``, the Python prefix's ``lib`` and the system library
directories: the first ``libvfio-user.so.0`` there that the recipe stamped is used, wherever it was installed. The
library must be the build this binding was written for: revision ``PINNED_REVISION`` with the project's patch
``native/libvfio-user-hostile-peers.patch`` applied (fd-backed DMA regions only, EEXIST for a map over a mapped
range, no fd leaks, messages assembled from pieces; decision TD-DMA-FD). The build writes ``libvfio-user.commit``
beside the library (:data:`BUILD_STAMP`: the revision, ``+``, the first 16 hex digits of the patch's sha256) and
:func:`load_library` refuses any other.
"""
from __future__ import annotations

import ctypes as C
import os
import sys
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
    """libvfio-user could not be loaded or is not the pinned revision; the message (one line) says where the loader
    looked, what it found, and how to build the library with the project's recipe."""


#: The file name the loader looks for, and the stamp the recipe writes beside it.
LIBRARY_NAME = "libvfio-user.so.0"
STAMP_NAME = "libvfio-user.commit"
#: Directories searched after the named places, as the dynamic linker's defaults (and the venv's own lib).
SYSTEM_DIRS = ("/usr/local/lib", "/usr/local/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
               "/usr/lib64", "/usr/lib")
#: How to build the library: printed when none is found.
RECIPE = ("build it with the project's recipe: in a vfu-virtio source tree run `VMKIT=DIR bash native/libvfio-user.sh` "
          "(needs meson, ninja-build, pkg-config, gcc, patch, libjson-c-dev, libcmocka-dev; `scripts/setup --host-only`"
          " installs those and builds it into .vmkit/), then set LIBVFIO_USER_SO=DIR/lib/libvfio-user.so.0, or copy "
          "libvfio-user.so.0 together with libvfio-user.commit into one of the directories searched")


#: The checkout this package runs from (its ``.vmkit/lib`` holds the recipe's build), if it is one.
SOURCE_TREE = Path(__file__).resolve().parents[2]


def candidates(environ=os.environ) -> list[tuple[Path, str]]:
    """Where the loader looks, in order, as (path, why there): ``$LIBVFIO_USER_SO``; ``$VMKIT/lib`` (the recipe's
    output when VMKIT is set); the source tree's ``.vmkit/lib`` (when this package runs from a checkout); each
    directory of ``$LD_LIBRARY_PATH``; the Python prefix's ``lib``; :data:`SYSTEM_DIRS`."""
    out: list[tuple[Path, str]] = []
    if environ.get("LIBVFIO_USER_SO"):
        out.append((Path(environ["LIBVFIO_USER_SO"]), "LIBVFIO_USER_SO"))
    if environ.get("VMKIT"):
        out.append((Path(environ["VMKIT"]) / "lib" / LIBRARY_NAME, "$VMKIT/lib"))
    if (SOURCE_TREE / "native" / "libvfio-user.sh").exists():
        out.append((SOURCE_TREE / ".vmkit" / "lib" / LIBRARY_NAME, "the source tree"))
    dirs = [d for d in environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    dirs += [os.path.join(sys.prefix, "lib"), *SYSTEM_DIRS]
    out += [(Path(d) / LIBRARY_NAME, d) for d in dirs]
    seen: set[Path] = set()
    return [(p, why) for p, why in out if not (p in seen or seen.add(p))]


def build_stamp(path: Path) -> str | None:
    """The stamp recorded beside the library ``path`` -- ``libvfio-user.commit`` in its directory, or in the directory
    of the file it resolves to (a symlink into the build) -- or None when there is none."""
    for d in (path.parent, Path(os.path.realpath(path)).parent):
        stamp = d / STAMP_NAME
        if stamp.is_file():
            return stamp.read_text().strip()
    return None


def locate(environ=os.environ) -> Path:
    """The first library of :func:`candidates` stamped :data:`BUILD_STAMP`, wherever it was installed.

    A path named by ``$LIBVFIO_USER_SO`` must exist and be that build (no other place is tried); elsewhere a build
    with another stamp is passed over. Raises :class:`LibraryNotFound` listing the places and what was found there.
    """
    found = []
    for path, why in candidates(environ):
        explicit = why == "LIBVFIO_USER_SO"
        if not path.exists():
            if explicit:
                raise LibraryNotFound(f"LIBVFIO_USER_SO={path}: no such file; {RECIPE}")
            continue
        stamp = build_stamp(path)
        if stamp == BUILD_STAMP:
            return path
        shown = stamp or f"unknown (no {STAMP_NAME} beside it)"
        if explicit:
            raise LibraryNotFound(f"LIBVFIO_USER_SO={path} is libvfio-user build {shown}; this binding is written "
                                  f"for {BUILD_STAMP} (revision + the project's patch): rebuild it with "
                                  "native/libvfio-user.sh (scripts/setup)")
        found.append(f"{path} is build {shown}")
    looked = ", ".join(f"{p.parent}" for p, _why in candidates(environ))
    others = f"; found only other builds ({'; '.join(found)})" if found else ""
    raise LibraryNotFound(f"{LIBRARY_NAME} built from revision {PINNED_REVISION[:12]} with the project's patch (stamp "
                          f"{BUILD_STAMP}) not found (looked in {looked}){others}; {RECIPE}")


_LIB: C.CDLL | None = None


def load_library() -> C.CDLL:
    """Load libvfio-user once (:func:`locate`) and declare every prototype used by the binding.

    Raises :class:`LibraryNotFound` (see :func:`locate`).
    """
    global _LIB
    if _LIB is not None:
        return _LIB
    path = locate()
    lib = C.CDLL(str(path), use_errno=True)
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    _LIB = lib
    return lib
