"""The guest kit: QEMU, the guest kernel and modules, the guest program, and the initramfs built from them.

Paths come from the environment ``scripts/setup`` writes into ``.vmkit/env.sh``: ``VFU_QEMU``,
``VFU_GUEST_KERNEL``, ``VFU_GUEST_MODULES`` (a tree holding ``lib/modules/<release>``),
``VFU_GUEST_AFALG`` (static binary of ``guest/afalg.c``), ``VFU_ACCEL`` (``tcg`` or ``kvm``).
The initramfs (busybox, ``guest/init``, the guest program, the module closure of virtio_pci,
virtio_crypto and algif_skcipher) is cached under ``$VMKIT/cache`` by a hash of its inputs.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
GUEST_INIT = TOP / "guest" / "init"
MODULES = ("virtio_pci", "virtio_crypto", "algif_skcipher")


class KitMissing(RuntimeError):
    """The guest kit is not provisioned (run scripts/setup); the message names what is missing."""


@dataclass(frozen=True)
class Kit:
    qemu: Path
    kernel: Path
    modules_root: Path
    afalg: Path
    accel: str

    @classmethod
    def from_env(cls) -> "Kit":
        """Read the kit's paths from the environment (source .vmkit/env.sh); raises :class:`KitMissing`."""
        env = {}
        vmkit = Path(os.environ.get("VMKIT", TOP / ".vmkit"))
        env_sh = vmkit / "env.sh"
        if env_sh.exists():  # also work without a sourced env.sh
            for line in env_sh.read_text().splitlines():
                if line.startswith("export ") and "=" in line:
                    k, v = line[7:].split("=", 1)
                    env[k] = v
        get = lambda k: os.environ.get(k) or env.get(k, "")  # noqa: E731
        accel = get("VFU_ACCEL")
        if accel.startswith("${"):
            accel = "tcg"
        kit = cls(Path(get("VFU_QEMU")), Path(get("VFU_GUEST_KERNEL")), Path(get("VFU_GUEST_MODULES")),
                  Path(get("VFU_GUEST_AFALG")), accel or "tcg")
        for name, p in (("QEMU", kit.qemu), ("guest kernel", kit.kernel), ("guest modules", kit.modules_root),
                        ("guest program", kit.afalg)):
            if not str(p) or str(p) == "." or not p.exists():
                raise KitMissing(f"{name} not found ({p or 'unset'}): run scripts/setup (without --host-only)")
        return kit

    @property
    def kernel_release(self) -> str:
        return next((self.modules_root / "lib" / "modules").iterdir()).name

    def qemu_version(self) -> str:
        out = subprocess.run([str(self.qemu), "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0] if out else "unknown"

    def module_closure(self) -> list[Path]:
        """Module files (relative to lib/modules/<release>) of MODULES and everything they depend on."""
        base = self.modules_root / "lib" / "modules" / self.kernel_release
        deps: dict[str, tuple[str, list[str]]] = {}
        for line in (base / "modules.dep").read_text().splitlines():
            path, _, rest = line.partition(":")
            name = Path(path).name.split(".ko")[0].replace("-", "_")
            deps[name] = (path, rest.split())
        want, seen, out = list(MODULES), set(), []
        while want:
            name = want.pop()
            if name in seen or name not in deps:
                continue
            seen.add(name)
            path, dep_paths = deps[name]
            out.append(Path(path))
            want += [Path(d).name.split(".ko")[0].replace("-", "_") for d in dep_paths]
        return out

    def initramfs(self) -> Path:
        """Build (or reuse) the gzip'd newc initramfs; returns its path."""
        base = self.modules_root / "lib" / "modules" / self.kernel_release
        mods = self.module_closure()
        h = hashlib.sha256()
        for p in [GUEST_INIT, self.afalg, Path("/bin/busybox")] + [base / m for m in mods]:
            h.update(str(p).encode())
            h.update(p.read_bytes())
        cache = Path(os.environ.get("VMKIT", TOP / ".vmkit")) / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        out = cache / f"initramfs-{h.hexdigest()[:16]}.gz"
        if out.exists():
            return out
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            for sub in ("bin", "sbin", "proc", "sys", "dev", "tmp", "etc"):
                (root / sub).mkdir()
            shutil.copy("/bin/busybox", root / "bin" / "busybox")
            applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout.split()
            for a in applets:
                if a != "busybox":
                    (root / "bin" / a).symlink_to("busybox")
            mroot = root / "lib" / "modules" / self.kernel_release
            for m in mods:
                (mroot / m).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(base / m, mroot / m)
            for f in base.glob("modules.builtin*"):
                shutil.copy(f, mroot / f.name)
            subprocess.run(["/bin/busybox", "depmod", "-b", str(root), self.kernel_release], check=True)
            shutil.copy(GUEST_INIT, root / "init")
            (root / "init").chmod(0o755)
            shutil.copy(self.afalg, root / "bin" / "afalg")
            files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
            cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files,
                                  capture_output=True, check=True).stdout
            tmp = out.with_suffix(".tmp")
            subprocess.run(["gzip", "-6"], input=cpio, stdout=open(tmp, "wb"), check=True)
            tmp.rename(out)
        return out
