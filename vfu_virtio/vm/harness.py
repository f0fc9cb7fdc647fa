"""Boot a Linux guest under QEMU with devices attached, and read what it reports.

:class:`DeviceServers` starts ``vfu-virtio`` server processes (crypto, rpmb) on fresh sockets and stops
them by PID; :func:`boot` runs QEMU with shared memfd guest RAM and one JSON-form ``vfio-user-pci`` per
socket (or QEMU's own ``virtio-crypto-pci`` with ``cryptodev-backend-builtin``), enforces a timeout and
parses the ``VFU-*`` console markers of ``guest/init`` into a :class:`GuestReport`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .kit import TOP, Kit

BUILTIN_CRYPTO = ["-object", "cryptodev-backend-builtin,id=c0", "-device", "virtio-crypto-pci,cryptodev=c0"]


class DeviceServers:
    """vfu-virtio server processes for one boot; a context manager that always stops them.

    ``add(kind, *options)`` starts ``python -m vfu_virtio <kind> --socket ... --state ...`` and waits
    for its socket (raises RuntimeError with the server's log if it does not appear in 20 s).
    """

    def __init__(self, workdir: Path, state: Path | None = None, log_level: str = "info"):
        self.workdir = workdir
        self.state = state or workdir / "state.db"
        self.log_level = log_level
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def add(self, kind: str, *options: str) -> str:
        sock = self.workdir / f"{kind}{len(self.procs)}.sock"
        log = self.workdir / f"{kind}{len(self.procs)}.log"
        cmd = [sys.executable, "-m", "vfu_virtio", "--log-level", self.log_level, kind, "--socket", str(sock),
               "--state", str(self.state), "--instance", str(len(self.procs)), *options]
        proc = subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=TOP)
        self.procs.append((kind, proc, log))
        deadline = time.monotonic() + 20
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.procs.pop()
                proc.kill()
                proc.wait()
                raise RuntimeError(f"{kind} server did not come up:\n{log.read_text(errors='replace')}")
            time.sleep(0.02)
        return str(sock)

    def logs(self) -> str:
        return "\n".join(f"--- {kind} ---\n{log.read_text(errors='replace')}" for kind, _p, log in self.procs)

    def alive(self) -> list[bool]:
        return [p.poll() is None for _k, p, _l in self.procs]

    def __enter__(self) -> "DeviceServers":
        return self

    def __exit__(self, *exc) -> None:
        for _kind, proc, _log in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _kind, proc, _log in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class GuestReport:
    """What the guest printed: ``pci`` and ``virtio`` dicts per device, ``algs`` by driver name,
    ``afalg``/``ct`` per size, ``irqs`` per phase, ``lines`` (every VFU- line), ``console`` (all)."""

    console: str
    seconds: float
    returncode: int
    lines: list[str] = field(default_factory=list)
    pci: list[dict] = field(default_factory=list)
    virtio: list[dict] = field(default_factory=list)
    algs: dict[str, dict] = field(default_factory=dict)
    ct: dict[int, str] = field(default_factory=dict)
    afalg: dict[int, str] = field(default_factory=dict)
    irqs: dict[str, dict[str, int]] = field(default_factory=dict)
    bench: list[dict] = field(default_factory=list)
    dmesg: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return "VFU-DONE" in self.lines

    def marker(self, prefix: str) -> list[str]:
        return [ln for ln in self.lines if ln.startswith(prefix)]


def _kv(s: str) -> dict:
    return dict(p.split("=", 1) for p in s.split() if "=" in p)


def parse(console: str, seconds: float, returncode: int) -> GuestReport:
    r = GuestReport(console, seconds, returncode)
    for raw in console.splitlines():
        m = re.search(r"(VFU-[A-Z-]+.*)$", raw.strip())
        if not m:
            continue
        line = m.group(1).strip()
        r.lines.append(line)
        tag, _, rest = line.partition(" ")
        if tag == "VFU-PCI":
            r.pci.append({"slot": rest.split()[0], **_kv(rest)})
        elif tag == "VFU-VIRTIO":
            r.virtio.append({"name": rest.split()[0], **_kv(rest)})
        elif tag == "VFU-ALG":
            kv = _kv(rest)
            r.algs[kv.get("driver", "")] = kv
        elif tag in ("VFU-CT", "VFU-AFTER-RESET-CT"):
            kv = _kv(rest)
            r.ct[int(kv["size"]) * (1 if tag == "VFU-CT" else -1)] = kv["sha256"]
        elif tag in ("VFU-AFALG", "VFU-AFTER-RESET-AFALG"):
            kv = _kv(rest)
            r.afalg[int(kv["size"]) * (1 if tag == "VFU-AFALG" else -1)] = kv.get("decrypt", "")
        elif tag == "VFU-IRQ":
            phase, irq, name, count = rest.split()
            r.irqs.setdefault(phase, {})[f"{irq}{name}"] = int(count)
        elif tag == "VFU-BENCH":
            r.bench.append({k: (v if k == "driver" else int(v)) for k, v in _kv(rest).items()})
        elif tag == "VFU-DMESG":
            r.dmesg.append(rest)
    return r


def boot(kit: Kit, sockets: list[str] = (), extra: list[str] = (), params: dict | None = None,
         timeout: float = 180, memory: str = "512M") -> GuestReport:
    """Boot the guest once with ``sockets`` attached through vfio-user-pci (and ``extra`` QEMU args);
    ``params`` become ``vfu.<key>=<value>`` on the kernel command line. Kills QEMU after ``timeout``."""
    cmdline = "console=ttyS0 panic=-1 quiet " + " ".join(f"vfu.{k}={v}" for k, v in (params or {}).items())
    args = [str(kit.qemu), "-machine", "q35,memory-backend=mem", "-accel", kit.accel, "-m", memory, "-smp", "1",
            "-nographic", "-no-reboot", "-vga", "none", "-nic", "none",
            "-object", f"memory-backend-memfd,id=mem,size={memory},share=on",
            "-kernel", str(kit.kernel), "-initrd", str(kit.initramfs()), "-append", cmdline]
    for s in sockets:
        args += ["-device", json.dumps({"driver": "vfio-user-pci", "socket": {"path": s, "type": "unix"}})]
    args += list(extra)
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        out.seek(0)
        console = out.read().decode(errors="replace")
    return parse(console, time.monotonic() - t0, rc)
