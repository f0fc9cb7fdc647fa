"""DPDK in the guest image: which files of the kit's unpacked bookworm DPDK packages go into it, and where.

:func:`image_files` takes, from ``root`` (the packages unpacked by ``scripts/setup``), the programs
:data:`PROGRAMS`, the EAL plugins :data:`PLUGINS` and everything they load: the shared-library closure as the
tree's own dynamic loader reports it (``ld.so --library-path ... --list``), every symlink of a chain kept as a
symlink, plus ``libgcc_s`` (which glibc dlopen()s at thread cancellation, so no listing shows it) and the
loader itself at its ``/lib64`` path. A library that would resolve outside ``root`` is an error.

EAL loads every shared object of its default plugin directory (:data:`PMD_DIR`); Debian's holds every driver.
The image's holds exactly :data:`PLUGINS`: the files of other driver libraries the programs link directly
(Debian keeps their real files there too) move to :data:`LIB_DIR`, and the symlinks that pointed at them
follow.
"""
from __future__ import annotations

import os
import posixpath
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .kit import KitMissing

LIB_DIR = "usr/lib/x86_64-linux-gnu"
PMD_DIR = f"{LIB_DIR}/dpdk/pmds-23.0"
LOADER = "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
PROGRAMS = ("usr/bin/dpdk-test", "usr/bin/dpdk-test-crypto-perf")
#: EAL plugins: the PMD under test, the PCI and vdev buses, the ring mempool handler
PLUGINS = ("crypto_virtio", "bus_pci", "bus_vdev", "mempool_ring")
LIBGCC = "lib/x86_64-linux-gnu/libgcc_s.so.1"


@dataclass(frozen=True)
class Entry:
    """One image entry: a regular file copied from ``source``, or a symlink to ``target``."""
    source: Path | None = None
    target: str | None = None


def _plugin_roots() -> list[str]:
    return [f"{PMD_DIR}/librte_{p}.so.23" for p in PLUGINS]


def _is_plugin(name: str) -> bool:
    return any(name.startswith(f"librte_{p}.so") for p in PLUGINS)


def _add_chain(root: Path, rel: str, entries: dict[str, Entry]) -> None:
    """``rel`` (a path inside ``root``) and, through its symlinks, the file it names."""
    while rel not in entries:
        path = root / rel
        if path.is_symlink():
            target = os.readlink(path)
            entries[rel] = Entry(target=target)
            rel = target.lstrip("/") if target.startswith("/") else \
                posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        elif path.is_file():
            entries[rel] = Entry(source=path)
        else:
            raise KitMissing(f"{rel} is not in the unpacked DPDK packages {root}: run scripts/setup")


def _needed(root: Path, rel: str) -> list[str]:
    """Paths (inside ``root``) of the shared objects the loader maps for ``rel``."""
    search = ":".join(str(root / d) for d in ("lib/x86_64-linux-gnu", LIB_DIR, PMD_DIR))
    out = subprocess.run([str(root / LOADER), "--library-path", search, "--list", str(root / rel)],
                         capture_output=True, text=True, timeout=60)
    if out.returncode:
        raise KitMissing(f"the DPDK loader cannot list {rel}: {out.stderr.strip() or out.stdout.strip()}")
    found = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>" and parts[2].startswith("/"):
            path = Path(parts[2])
            if root not in path.parents:
                raise KitMissing(f"{rel} needs {parts[0]}, which resolves outside {root}: {path}")
            found.append(str(path.relative_to(root)))
        elif len(parts) >= 2 and parts[1] == "=>" and parts[2] == "not":
            raise KitMissing(f"{rel} needs {parts[0]}, which is not in {root}")
    return found


def image_files(root: Path) -> dict[str, Entry]:
    """``{path in the image: Entry}`` for DPDK (see the module docstring); KitMissing if ``root`` lacks a part."""
    root = Path(os.path.abspath(root))
    entries: dict[str, Entry] = {}
    for rel in [*PROGRAMS, *_plugin_roots(), LIBGCC]:
        _add_chain(root, rel, entries)
        for lib in _needed(root, rel):
            _add_chain(root, lib, entries)
    _add_chain(root, LOADER, entries)
    entries["lib64/ld-linux-x86-64.so.2"] = Entry(target=f"/{LOADER}")
    moved: dict[str, str] = {}
    for rel in [r for r in entries if posixpath.dirname(r) == PMD_DIR and not _is_plugin(posixpath.basename(r))]:
        entry = entries.pop(rel)
        if entry.source is not None:
            dest = f"{LIB_DIR}/{posixpath.basename(rel)}"
            entries[dest] = entry
            moved[rel] = dest
    for rel, entry in list(entries.items()):  # symlinks into the plugin directory: to the moved file
        if entry.target is not None and posixpath.normpath(posixpath.join(posixpath.dirname(rel), entry.target)) \
                not in entries and not entry.target.startswith("/"):
            real = str(Path(os.path.realpath(root / rel)).relative_to(os.path.realpath(root)))
            if real not in moved or posixpath.dirname(rel) != LIB_DIR:
                raise KitMissing(f"{rel} -> {entry.target}: dangling in the DPDK image")
            entries[rel] = Entry(target=posixpath.basename(moved[real]))
    return entries
