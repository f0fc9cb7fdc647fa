"""The guest's initramfs images, built in Python: busybox, ``guest/init``, a scenario script, programs, modules.

An archive is an uncompressed cpio "newc" image written here (no cpio tool, no root: the device node
/dev/console is just a header). One image per :class:`Profile` and kernel: ``linux`` (the virtio_crypto checks:
``guest/linux.sh``, the programs ``afalg`` and ``pkey``) and ``dpdk`` (DPDK's crypto_virtio PMD on
``uio_pci_generic``: ``guest/dpdk.sh`` and the files :func:`vfu_virtio.qemu.dpdk_image.image_files` picks, the preload
shim at ``usr/lib/vfu/enotsup.so``). ``guest/init`` and ``guest/lib.sh`` are in both; a scenario script lands at
``lib/vfu/<profile>.sh``, and a profile's further scenarios (the linux image's ``faults``, ``guest/faults.sh``) at
``lib/vfu/<name>.sh``, chosen with ``vfu.scenario=<name>``. The modules are the closure, by the kernel's own ``modules.dep``, of the profile's
modules (a module built into this kernel, by its ``modules.builtin``, needs no file; those marked optional are
skipped when this kernel has no such module).

An image is cached under ``$VMKIT/cache`` by a SHA-256 of everything that goes into it, so an unchanged kit
reuses it and any changed input builds a new one, which replaces the older image of the same profile and kernel.
Per-boot files (keys, vectors) do not go into the cached image: :func:`with_files` writes the image followed by
a second newc archive holding them (the kernel unpacks concatenated archives in order).
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import dpdk_image
from .kit import GUEST_DIR, GuestKit, KitMissing, vmkit_dir

BUSYBOX = Path("/bin/busybox")
FORMAT = b"vfu-virtio initramfs v3"  # bump when the layout changes without an input changing


@dataclass(frozen=True)
class Profile:
    """What one kind of guest image holds besides busybox and ``guest/init``."""
    name: str
    #: (module, required) to load; their modules.dep closure goes in
    modules: tuple[tuple[str, bool], ...]
    #: static guest programs (``GuestKit.program``), installed as ``bin/<name>``
    programs: tuple[str, ...] = ()
    #: DPDK's programs, plugins and libraries, and the preload shim
    dpdk: bool = False
    #: further scenario scripts (``guest/<name>.sh``) the image carries besides the profile's own
    scenarios: tuple[str, ...] = ()


#: the block cipher modes tcrypt mode=10 tests besides cbc(aes) (optional: a kernel may build them in or lack one)
TCRYPT_MODE10_TEMPLATES = ("ecb", "lrw", "xts", "ctr", "ofb", "cfb", "xctr")
#: algif_akcipher never reached mainline, so it is optional; tcrypt runs the kernel's test vectors on request,
#: pkcs8_key_parser lets keyctl load an RSA private key
PROFILES = {p.name: p for p in (
    Profile("linux", (("virtio_pci", True), ("virtio_crypto", True), ("algif_skcipher", True),
                      ("algif_akcipher", False), ("tcrypt", True), ("pkcs8_key_parser", True),
                      *((t, False) for t in TCRYPT_MODE10_TEMPLATES)),
            programs=("afalg", "pkey"), scenarios=("faults",)),
    Profile("dpdk", (("uio", True), ("uio_pci_generic", True)), dpdk=True),
)}


def module_name(path: str) -> str:
    """``kernel/drivers/virtio/virtio_pci.ko[.xz]`` -> ``virtio_pci`` (dashes become underscores)."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def builtin_modules(modules_dir: Path) -> set[str]:
    """Names of the modules built into the kernel (its ``modules.builtin``; empty when the file is absent)."""
    path = modules_dir / "modules.builtin"
    return {module_name(line) for line in path.read_text().split()} if path.exists() else set()


def module_closure(modules_dir: Path, wanted: tuple[tuple[str, bool], ...]) -> list[str]:
    """Paths (relative to lib/modules/<release>) of the ``wanted`` modules and all they depend on, deps first;
    a module built into the kernel needs none; KitMissing for a required module this kernel lacks."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[module_name(path)] = (path, [module_name(d) for d in rest.split()])
    builtin = builtin_modules(modules_dir)
    order: list[str] = []

    def visit(name: str) -> None:
        path, needs = deps[name]
        if path in order:
            return
        for dep in needs:
            visit(dep)
        order.append(path)

    for name, required in wanted:
        if name in deps:
            visit(name)
        elif required and name not in builtin:
            raise KitMissing(f"module {name} not in {modules_dir}/modules.dep: run scripts/setup")
    return order


class Newc:
    """A cpio "newc" archive being written: directories, files, symlinks, character devices."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.ino = 0

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        raw = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw), 0)
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self.parts += [header, raw, b"\0" * (-(len(header) + len(raw)) % 4), data, b"\0" * (-len(data) % 4)]

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return b"".join(self.parts)


def _busybox_links() -> list[str]:
    """Install paths of busybox's applets (``bin/sh``, ``sbin/modprobe``, ``usr/bin/sha256sum``, ...)."""
    out = subprocess.run([str(BUSYBOX), "--list-full"], capture_output=True, text=True, check=True).stdout
    return [p for p in out.split() if p and p != "bin/busybox"]


def _dirs_of(paths) -> list[str]:
    """Every parent directory of ``paths``, parents first."""
    dirs: set[str] = set()
    for rel in paths:
        parent = Path(rel).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    return sorted(dirs, key=lambda p: (p.count("/"), p))


def build(kit: GuestKit, profile: str = "linux") -> Path:
    """The ``profile`` image (:data:`PROFILES`) for ``kit``'s kernel, built now or reused from the cache."""
    if not BUSYBOX.exists():
        raise KitMissing(f"{BUSYBOX} missing: install busybox-static (scripts/setup does)")
    prof = PROFILES[profile]
    mdir, release = kit.modules_dir, kit.kernel_release
    modules = module_closure(mdir, prof.modules)
    wanted_names = {module_name(m) for m in modules}
    executable = {"init", "bin/busybox"} | {f"bin/{p}" for p in prof.programs}
    files: dict[str, Path] = {"init": GUEST_DIR / "init", "lib/vfu/lib.sh": GUEST_DIR / "lib.sh",
                              f"lib/vfu/{profile}.sh": GUEST_DIR / f"{profile}.sh", "bin/busybox": BUSYBOX}
    files.update({f"bin/{p}": kit.program(p) for p in prof.programs})
    files.update({f"lib/vfu/{s}.sh": GUEST_DIR / f"{s}.sh" for s in prof.scenarios})
    files.update({f"lib/modules/{release}/{m}": mdir / m for m in modules})
    symlinks: dict[str, str] = {}
    if prof.dpdk:
        for rel, entry in dpdk_image.image_files(kit.dpdk_root).items():
            if entry.source is not None:
                files[rel] = entry.source
                executable |= {rel} if entry.source.stat().st_mode & 0o100 else set()  # programs, the loader
            else:
                symlinks[rel] = entry.target
        files["usr/lib/vfu/enotsup.so"] = kit.dpdk_shim
    digest = hashlib.sha256(FORMAT + profile.encode() + b"\0" + release.encode())
    for name, path in sorted(files.items()):
        mode = b"x" if name in executable else b"-"
        digest.update(name.encode() + b"\0" + mode + hashlib.sha256(path.read_bytes()).digest())
    for name, target in sorted(symlinks.items()):
        digest.update(name.encode() + b"\0->" + target.encode())
    cache = vmkit_dir() / "cache"
    stem = f"initramfs-{profile}-{release}-"
    out = cache / f"{stem}{digest.hexdigest()[:20]}.cpio"
    if out.exists():
        return out

    arc = Newc()
    links = [p for p in _busybox_links() if p not in files and p not in symlinks]
    arc.dir(".")  # the root directory's mode: 0755 (DPDK's EAL refuses a world-writable path to its plugins)
    base_dirs = ["dev", "proc", "sys", "tmp", "run", "etc", "mnt", "lib", "lib/modules", f"lib/modules/{release}"]
    for d in sorted(set(base_dirs) | set(_dirs_of([*links, *files, *symlinks])), key=lambda p: (p.count("/"), p)):
        arc.dir(d)
    arc.chardev("dev/console", 5, 1)
    for name, path in files.items():
        arc.file(name, path.read_bytes(), 0o755 if name in executable else 0o644)
    for rel, target in symlinks.items():
        arc.symlink(rel, target)
    for rel in links:
        arc.symlink(rel, "/bin/busybox")
    dep_lines = [ln for ln in (mdir / "modules.dep").read_text().splitlines()
                 if module_name(ln.partition(":")[0]) in wanted_names]
    alias_lines = [ln for ln in (mdir / "modules.alias").read_text().splitlines()
                   if ln.startswith("alias ") and module_name(ln.split()[-1]) in wanted_names]
    arc.file(f"lib/modules/{release}/modules.dep", ("\n".join(dep_lines) + "\n").encode())
    arc.file(f"lib/modules/{release}/modules.alias", ("\n".join(alias_lines) + "\n").encode())
    arc.file(f"lib/modules/{release}/modules.builtin", (mdir / "modules.builtin").read_bytes())

    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    tmp.write_bytes(arc.finish())
    os.replace(tmp, out)
    for old in cache.glob(f"{stem}*.cpio"):  # superseded images of this profile and kernel
        if old != out:
            old.unlink(missing_ok=True)
    return out


def with_files(image: Path, files: dict[str, bytes], out: Path) -> Path:
    """Write ``image`` followed by a newc archive of ``files`` (``{path: bytes}``, with their directories) to
    ``out``; returns ``out``."""
    arc = Newc()
    for d in _dirs_of(files):
        arc.dir(d)
    for name, data in files.items():
        arc.file(name, data)
    with open(out, "wb") as f:
        f.write(image.read_bytes())
        f.write(arc.finish())
    return out
