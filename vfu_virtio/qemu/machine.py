"""One QEMU boot of the guest: the command line, the console, the time limit, and QEMU's own clean-up.

The machine is q35 with its RAM in a shared memfd (``memory-backend-memfd,share=on``: a vfio-user
device maps guest memory from the fds QEMU sends), no display, no network, serial console on stdout,
``-no-reboot`` and ``panic=-1`` so that both power-off and a panic end the process; :class:`Machine` says which
initramfs profile it boots (the scenario: ``vfu.scenario=<profile>`` on the kernel command line), its RAM, vCPUs
and CPU model (the ``linux`` scenario: 512 MiB, one vCPU, QEMU's default CPU; DPDK needs SSE4.2, so ``-cpu max``,
and a worker lcore, so two vCPUs). Per-boot files (keys, test vectors) travel in an archive appended to the
cached initramfs (:func:`vfu_virtio.qemu.initramfs.with_files`). Devices are
:class:`VfioUser` (``vfio-user-pci``, JSON ``-device`` form: the only one QEMU's client accepts) or
:class:`QemuBuiltinCrypto` (QEMU's own ``virtio-crypto-pci`` on ``cryptodev-backend-builtin``).
:func:`boot` reads the console as it comes, kills QEMU by PID when the time limit passes, and returns a
:class:`BootResult` whatever happened.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import initramfs
from .kit import GuestKit


@dataclass(frozen=True)
class VfioUser:
    """A device served over vfio-user on ``socket`` (the server must be listening before boot)."""
    socket: Path

    def qemu_args(self, index: int) -> list[str]:
        dev = {"driver": "vfio-user-pci", "id": f"vfu{index}", "socket": {"path": str(self.socket), "type": "unix"}}
        return ["-device", json.dumps(dev)]


@dataclass(frozen=True)
class QemuBuiltinCrypto:
    """QEMU's own virtio-crypto-pci with the builtin (in-QEMU software) cryptodev backend (one data queue:
    QEMU refuses more for this backend)."""

    def qemu_args(self, index: int) -> list[str]:
        return ["-object", f"cryptodev-backend-builtin,id=cryptodev{index}",
                "-device", f"virtio-crypto-pci,id=vcrypto{index},cryptodev=cryptodev{index}"]


Device = VfioUser | QemuBuiltinCrypto


@dataclass(frozen=True)
class Machine:
    """The guest machine: initramfs profile (``linux`` or ``dpdk``), RAM in MiB, vCPUs, QEMU CPU model (None: the
    default model)."""
    profile: str = "linux"
    memory_mib: int = 512
    smp: int = 1
    cpu: str | None = None


LINUX = Machine()
DPDK = Machine("dpdk", memory_mib=1024, smp=2, cpu="max")


@dataclass
class BootResult:
    argv: list[str]
    console: str  # the guest's serial console (QEMU's stdout)
    stderr: str   # QEMU's own messages
    returncode: int
    seconds: float
    timed_out: bool


def qemu_argv(kit: GuestKit, devices: list[Device], params: dict[str, object], machine: Machine = LINUX,
              initrd: Path | None = None) -> list[str]:
    """The full QEMU command line (building the initramfs if the cache lacks it, unless ``initrd`` is given);
    ``params`` become ``vfu.<key>=<value>`` on the kernel command line, after ``vfu.scenario``."""
    params = {"scenario": machine.profile, **params}
    append = " ".join(["console=ttyS0", "panic=-1", "quiet"] + [f"vfu.{k}={v}" for k, v in params.items()])
    argv = [str(kit.qemu), "-accel", kit.accel,
            "-object", f"memory-backend-memfd,id=mem,size={machine.memory_mib}M,share=on",
            "-machine", "q35,memory-backend=mem", "-m", f"{machine.memory_mib}M", "-smp", str(machine.smp)]
    if machine.cpu:
        argv += ["-cpu", machine.cpu]
    argv += ["-nographic", "-no-reboot", "-vga", "none", "-nic", "none", "-kernel", str(kit.kernel.vmlinuz),
             "-initrd", str(initrd or initramfs.build(kit, machine.profile)), "-append", append]
    for i, dev in enumerate(devices):
        argv += dev.qemu_args(i)
    return argv


def boot(kit: GuestKit, devices: list[Device], params: dict[str, object] | None = None, timeout: float = 300,
         on_line: Callable[[str], None] | None = None, machine: Machine = LINUX,
         files: dict[str, bytes] | None = None, qemu_args: Sequence[str] = ()) -> BootResult:
    """Boot once and wait for QEMU to exit (the guest powers off) or ``timeout`` seconds, then kill it.

    ``qemu_args`` go at the end of QEMU's command line (e.g. ``-trace`` options for a measurement).
    ``files`` (``{path in the guest: bytes}``) are added to the initramfs for this boot only. ``on_line`` sees
    each console line as it arrives (progress output). QEMU runs in its own session so a Ctrl-C at the
    terminal reaches only the harness, which then kills QEMU itself.
    """
    with tempfile.TemporaryDirectory(prefix="vfu-boot-") as tmp:
        initrd = initramfs.with_files(initramfs.build(kit, machine.profile), files, Path(tmp) / "initrd.cpio") \
            if files else None
        return _run(qemu_argv(kit, devices, params or {}, machine, initrd) + list(qemu_args), timeout, on_line)


def _run(argv: list[str], timeout: float, on_line: Callable[[str], None] | None) -> BootResult:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    out, err, partial = bytearray(), bytearray(), bytearray()
    timed_out = False
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    try:
        while sel.get_map():
            left = t0 + timeout - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in sel.select(min(left, 1.0)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if key.data is out and on_line:
                    partial.extend(chunk)
                    *lines, rest = partial.split(b"\n")
                    partial[:] = rest
                    for line in lines:
                        on_line(line.decode(errors="replace").rstrip("\r"))
        if partial and on_line:
            on_line(partial.decode(errors="replace").rstrip("\r"))
    finally:
        sel.close()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return BootResult(argv, out.decode(errors="replace"), err.decode(errors="replace"), rc,
                      time.monotonic() - t0, timed_out)
