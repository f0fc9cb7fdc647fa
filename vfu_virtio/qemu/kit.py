"""The guest kit: where QEMU, the guest kernel, its modules and the guest program are, and which accelerator.

``scripts/setup`` provisions the kit and writes ``$VMKIT/env.sh`` (``VMKIT`` defaults to the checkout's
``.vmkit``): ``VFU_QEMU``, ``VFU_GUEST_KERNEL``, ``VFU_GUEST_MODULES`` (a tree holding
``lib/modules/<release>``), ``VFU_GUEST_AFALG`` (the static build of ``guest/afalg.c``) and
``VFU_ACCEL``. Values in the process environment win over env.sh, so a sourced env.sh and a bare
checkout behave the same. The accelerator is ``VFU_ACCEL`` when set, otherwise detected here.
"""
from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
GUEST_DIR = TOP / "guest"


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


@dataclass(frozen=True)
class GuestKit:
    qemu: Path
    kernel: Path
    modules_root: Path
    afalg: Path
    accel: str

    @classmethod
    def from_env(cls) -> "GuestKit":
        """The kit named by the environment / env.sh; raises :class:`KitMissing` naming what is absent or stale."""
        sh = _env_sh()

        def get(name: str) -> str:
            return os.environ.get(name) or sh.get(name, "")

        paths = {"VFU_QEMU": get("VFU_QEMU"), "VFU_GUEST_KERNEL": get("VFU_GUEST_KERNEL"),
                 "VFU_GUEST_MODULES": get("VFU_GUEST_MODULES"), "VFU_GUEST_AFALG": get("VFU_GUEST_AFALG")}
        for name, value in paths.items():
            if not value or not Path(value).exists():
                raise KitMissing(f"{name} is {value or 'unset'}: run scripts/setup (without --host-only)")
        kit = cls(*(Path(v) for v in paths.values()), accel=get("VFU_ACCEL") or detect_accel())
        source = GUEST_DIR / "afalg.c"
        if source.exists() and source.stat().st_mtime > kit.afalg.stat().st_mtime:
            raise KitMissing(f"{kit.afalg} is older than {source}: run scripts/setup to rebuild it")
        if kit.accel not in ("tcg", "kvm"):
            raise KitMissing(f"VFU_ACCEL={kit.accel!r}: expected tcg or kvm")
        return kit

    @property
    def kernel_release(self) -> str:
        releases = sorted(p.name for p in (self.modules_root / "lib" / "modules").iterdir())
        if len(releases) != 1:
            raise KitMissing(f"expected one kernel release under {self.modules_root}/lib/modules, got {releases}")
        return releases[0]

    @property
    def modules_dir(self) -> Path:
        return self.modules_root / "lib" / "modules" / self.kernel_release

    def qemu_version(self) -> str:
        out = subprocess.run([str(self.qemu), "--version"], capture_output=True, text=True, timeout=60).stdout
        return out.splitlines()[0] if out else "QEMU (version unknown)"
