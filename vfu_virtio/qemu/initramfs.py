"""The guest's initramfs, built in Python: busybox, ``guest/init``, the guest program and a module closure.

The archive is an uncompressed cpio "newc" image written here (no cpio tool, no root: the device node
/dev/console is just a header). Its modules are the closure, by the kernel's own ``modules.dep``, of
:data:`WANTED_MODULES` (those marked optional are skipped when this kernel has no such module). The image
is cached under ``$VMKIT/cache`` by a SHA-256 of everything that goes into it, so an unchanged kit
reuses it and any changed input (init script, guest program, busybox, a module) builds a new one,
which replaces the old.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

from .kit import GUEST_DIR, GuestKit, KitMissing, vmkit_dir

#: (module, required): what guest/init loads; algif_akcipher never reached mainline, so it is optional.
WANTED_MODULES = (("virtio_pci", True), ("virtio_crypto", True), ("algif_skcipher", True),
                  ("algif_akcipher", False))
BUSYBOX = Path("/bin/busybox")
FORMAT = b"vfu-virtio initramfs v1"


def module_name(path: str) -> str:
    """``kernel/drivers/virtio/virtio_pci.ko[.xz]`` -> ``virtio_pci`` (dashes become underscores)."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def module_closure(modules_dir: Path) -> list[str]:
    """Paths (relative to lib/modules/<release>) of the wanted modules and all they depend on, deps first."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in (modules_dir / "modules.dep").read_text().splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[module_name(path)] = (path, [module_name(d) for d in rest.split()])
    order: list[str] = []

    def visit(name: str) -> None:
        path, needs = deps[name]
        if path in order:
            return
        for dep in needs:
            visit(dep)
        order.append(path)

    for name, required in WANTED_MODULES:
        if name in deps:
            visit(name)
        elif required:
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


def build(kit: GuestKit) -> Path:
    """The initramfs for ``kit`` (built now, or reused from the cache); returns its path."""
    if not BUSYBOX.exists():
        raise KitMissing(f"{BUSYBOX} missing: install busybox-static (scripts/setup does)")
    mdir, release = kit.modules_dir, kit.kernel_release
    modules = module_closure(mdir)
    wanted_names = {module_name(m) for m in modules}
    init = GUEST_DIR / "init"
    inputs = [("init", init), ("bin/afalg", kit.afalg), ("bin/busybox", BUSYBOX)] + \
             [(f"lib/modules/{release}/{m}", mdir / m) for m in modules]
    digest = hashlib.sha256(FORMAT + release.encode())
    for name, path in inputs:
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    cache = vmkit_dir() / "cache"
    out = cache / f"initramfs-{digest.hexdigest()[:20]}.cpio"
    if out.exists():
        return out

    arc = Newc()
    links = _busybox_links()
    dirs = {"dev", "proc", "sys", "tmp", "bin", "sbin", "usr", "usr/bin", "usr/sbin", "lib", "lib/modules",
            f"lib/modules/{release}"}
    for rel in links + [name for name, _ in inputs]:
        parent = Path(rel).parent
        while str(parent) != ".":
            dirs.add(str(parent))
            parent = parent.parent
    for d in sorted(dirs, key=lambda p: p.count("/")):
        arc.dir(d)
    arc.chardev("dev/console", 5, 1)
    for name, path in inputs:
        arc.file(name, path.read_bytes(), 0o755 if name in ("init", "bin/afalg", "bin/busybox") else 0o644)
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
    for old in cache.glob("initramfs-*.cpio"):  # superseded images (QEMU reads its initrd at start-up)
        if old != out:
            old.unlink(missing_ok=True)
    return out
