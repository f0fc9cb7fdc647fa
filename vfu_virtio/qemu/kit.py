"""The guest kit: where QEMU, the guest kernels, their modules, the guest programs and DPDK are, and which accelerator.

``scripts/setup`` provisions the kit and writes ``$VMKIT/env.sh`` (``VMKIT`` defaults to the checkout's
``.vmkit``): ``VFU_QEMU``; ``VFU_GUEST_KERNELS``, a ``:``-separated list of kernel directories, the default
kernel first, each holding ``vmlinuz``, ``kernel.info`` (``release=``, ``suite=``, ``package=``, ``debs=`` lines:
which Debian packages it came from) and ``lib/modules/<release>`` with plain ``.ko`` files and a
``modules.dep``; ``VFU_GUEST_BIN``, the static builds of ``guest/afalg.c`` and ``guest/pkey.c``; ``VFU_DPDK``,
with ``root/`` (bookworm's DPDK runtime packages unpacked), ``version`` and ``enotsup.so`` (the build of
``guest/dpdk_enotsup.c``); and ``VFU_ACCEL``. Values in the process environment win over env.sh, so a sourced
env.sh and a bare checkout behave the same. The accelerator is ``VFU_ACCEL`` when set, otherwise detected here.

A :class:`GuestKit` boots one of its kernels (:attr:`GuestKit.kernel`, the default one unless
:meth:`GuestKit.with_kernel` chose another): the guest tests take the kernel as a parameter that way.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
GUEST_DIR = TOP / "guest"
#: the guest programs built from ``guest/<name>.c`` into ``VFU_GUEST_BIN``
GUEST_PROGRAMS = ("afalg", "pkey")


class KitMissing(RuntimeError):
    """The guest kit is not (fully) provisioned; the message says what is missing and how to get it."""


def vmkit_dir() -> Path:
    return Path(os.environ.get("VMKIT") or TOP / ".vmkit")


def _env_sh() -> dict[str, str]:
    """``export K=V`` lines of $VMKIT/env.sh (shell defaults like ``${VFU_ACCEL:-tcg}`` resolved)."""
    path = vmkit_dir() / "env.sh"
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.fullmatch(r"export (\w+)=(.*)", line.strip())
            if m:
                default = re.fullmatch(r"\$\{\w+:-(.*)\}", m.group(2))
                values[m.group(1)] = default.group(1) if default else m.group(2)
    return values


def detect_accel() -> str:
    """``kvm`` only where it can boot a guest: /dev/kvm usable, a vmx/svm CPU, not nested PVM; else ``tcg``."""
    cpu = Path("/proc/cpuinfo").read_text()
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and re.search(r"\b(vmx|svm)\b", cpu) \
            and not Path("/sys/module/kvm_pvm").exists():
        return "kvm"
    return "tcg"


def _stale(source: Path, built: Path) -> bool:
    return source.exists() and source.stat().st_mtime > built.stat().st_mtime


@dataclass(frozen=True)
class GuestKernel:
    """One provisioned guest kernel (see the module docstring for the directory ``root``)."""
    root: Path
    release: str   # e.g. 6.1.0-57-amd64
    suite: str     # the Debian suite it came from, e.g. bookworm
    package: str   # the package setup asked for, e.g. linux-image-amd64
    debs: str      # the packages it was unpacked from, ``name=version`` comma-separated

    @classmethod
    def load(cls, root: Path) -> "GuestKernel":
        """Read ``root/kernel.info``; KitMissing when the directory is not a complete kernel."""
        info = root / "kernel.info"
        if not info.exists():
            raise KitMissing(f"{info} missing: run scripts/setup")
        fields = dict(line.split("=", 1) for line in info.read_text().splitlines() if "=" in line)
        kernel = cls(root, fields.get("release", ""), fields.get("suite", ""), fields.get("package", ""),
                     fields.get("debs", ""))
        for need in (kernel.vmlinuz, kernel.modules_dir / "modules.dep"):
            if not need.exists():
                raise KitMissing(f"{need} missing: run scripts/setup")
        return kernel

    @property
    def vmlinuz(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def modules_dir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def label(self) -> str:
        """``linux-<major>.<minor>`` (``linux-6.1``): the name tests and reports use."""
        m = re.match(r"(\d+)\.(\d+)", self.release)
        return f"linux-{m.group(1)}.{m.group(2)}" if m else f"linux-{self.release}"

    def describe(self) -> str:
        return f"{self.release} ({self.suite}: {self.debs.replace(',', ', ')})"


@dataclass(frozen=True)
class GuestKit:
    qemu: Path
    kernels: tuple[GuestKernel, ...]
    bin_dir: Path
    dpdk_dir: Path
    accel: str
    kernel: GuestKernel  # the kernel this kit boots

    @classmethod
    def from_env(cls) -> "GuestKit":
        """The kit named by the environment / env.sh, booting its default kernel; raises :class:`KitMissing`
        naming what is absent or stale."""
        sh = _env_sh()

        def get(name: str) -> str:
            return os.environ.get(name) or sh.get(name, "")

        paths = {name: get(name) for name in ("VFU_QEMU", "VFU_GUEST_BIN", "VFU_DPDK")}
        for name, value in paths.items():
            if not value or not Path(value).exists():
                raise KitMissing(f"{name} is {value or 'unset'}: run scripts/setup (without --host-only)")
        kernel_dirs = [d for d in get("VFU_GUEST_KERNELS").split(":") if d]
        if not kernel_dirs:
            raise KitMissing("VFU_GUEST_KERNELS is unset: run scripts/setup (without --host-only)")
        kernels = tuple(GuestKernel.load(Path(d)) for d in kernel_dirs)
        kit = cls(Path(paths["VFU_QEMU"]), kernels, Path(paths["VFU_GUEST_BIN"]), Path(paths["VFU_DPDK"]),
                  get("VFU_ACCEL") or detect_accel(), kernels[0])
        for name in GUEST_PROGRAMS:
            built = kit.program(name)
            if not built.exists() or _stale(GUEST_DIR / f"{name}.c", built):
                raise KitMissing(f"{built} is missing or older than guest/{name}.c: run scripts/setup to build it")
        for need in (kit.dpdk_root / "usr" / "bin" / "dpdk-test", kit.dpdk_shim):
            if not need.exists():
                raise KitMissing(f"{need} missing: run scripts/setup")
        if _stale(GUEST_DIR / "dpdk_enotsup.c", kit.dpdk_shim):
            raise KitMissing(f"{kit.dpdk_shim} is older than guest/dpdk_enotsup.c: run scripts/setup to rebuild it")
        if kit.accel not in ("tcg", "kvm"):
            raise KitMissing(f"VFU_ACCEL={kit.accel!r}: expected tcg or kvm")
        return kit

    def with_kernel(self, name: str) -> "GuestKit":
        """This kit booting the kernel whose :attr:`GuestKernel.label` or release is ``name`` (KitMissing if none)."""
        for k in self.kernels:
            if name in (k.label, k.release):
                return dataclasses.replace(self, kernel=k)
        raise KitMissing(f"no guest kernel {name!r} in the kit (have {[k.label for k in self.kernels]}): set "
                         "VFU_KERNEL_PACKAGES and run scripts/setup")

    def program(self, name: str) -> Path:
        """The static guest program built from ``guest/<name>.c``."""
        return self.bin_dir / name

    @property
    def dpdk_root(self) -> Path:
        return self.dpdk_dir / "root"

    @property
    def dpdk_shim(self) -> Path:
        return self.dpdk_dir / "enotsup.so"

    @property
    def dpdk_version(self) -> str:
        return (self.dpdk_dir / "version").read_text().strip()

    @property
    def kernel_release(self) -> str:
        return self.kernel.release

    @property
    def modules_dir(self) -> Path:
        return self.kernel.modules_dir

    def qemu_version(self) -> str:
        out = subprocess.run([str(self.qemu), "--version"], capture_output=True, text=True, timeout=60).stdout
        return out.splitlines()[0] if out else "QEMU (version unknown)"
