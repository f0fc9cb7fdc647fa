"""Side by side: every guest scenario against vfu-virtio and against QEMU's own device, on every kernel of the kit.

A :class:`Config` is one column of a scenario: a device model of :mod:`vfu_virtio.qemu.scenario` and, for
vfu-virtio, the servers' ``--ring`` (Linux negotiates VIRTIO_F_RING_PACKED whenever it is offered, so the
``linux`` scenario boots vfu-virtio twice: packed offered, and withheld with ``--ring split``; DPDK 22.11
negotiates nothing but VIRTIO_F_VERSION_1, so split rings either way). :func:`boot` runs one configuration
on one kernel with a fresh random plan; :func:`tables` prints the checks of :mod:`vfu_virtio.qemu.checks` as
one markdown table per scenario and kernel, a column per configuration. The guest tests boot through
:func:`boot` too; ``python -m vfu_virtio.qemu compare`` runs everything and prints the tables.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from . import checks, dpdk_checks, linux_checks
from .dpdk import DpdkPlan
from .kit import GuestKit
from .scenario import CryptoPlan, GuestRun, run_guest

#: vfu-virtio crypto's data queues and max_size in the guest runs (QEMU's builtin backend has one data queue)
QUEUES = 3
MAX_SIZE = 1 << 21


@dataclass(frozen=True)
class Config:
    name: str
    model: str  # vfu-virtio or qemu-builtin
    ring: str | None = None  # vfu-virtio's --ring


SCENARIOS: dict[str, tuple[Config, ...]] = {
    "linux": (Config("vfu-virtio", "vfu-virtio", "any"), Config("vfu-virtio-split", "vfu-virtio", "split"),
              Config("qemu-builtin", "qemu-builtin")),
    "dpdk": (Config("vfu-virtio", "vfu-virtio", "any"), Config("qemu-builtin", "qemu-builtin")),
}
CHECKS = {"linux": linux_checks.CHECKS, "dpdk": dpdk_checks.CHECKS}
TIMEOUT = {"linux": 300.0, "dpdk": 900.0}  # seconds per boot


def config(scenario: str, name: str) -> Config:
    return next(c for c in SCENARIOS[scenario] if c.name == name)


def new_plan(scenario: str) -> CryptoPlan | DpdkPlan:
    """A fresh random plan: AES-256 for the linux scenario (the demo uses AES-128), the DPDK vectors for dpdk."""
    return CryptoPlan.random(key_bytes=32) if scenario == "linux" else DpdkPlan.random(perf_ops=2000)


def boot(kit: GuestKit, scenario: str, name: str, workdir: Path | None = None,
         on_line: Callable[[str], None] | None = None) -> tuple[GuestRun, CryptoPlan | DpdkPlan]:
    """One boot of configuration ``name`` of ``scenario`` on ``kit``'s kernel: (run, plan)."""
    cfg, plan = config(scenario, name), new_plan(scenario)
    ring = ("--ring", cfg.ring) if cfg.ring else ()
    options = {"crypto": ("--queues", str(QUEUES), "--max-size", str(MAX_SIZE), *ring), "rpmb": ring}
    run = run_guest(kit, cfg.model, plan, device_options=options, workdir=workdir, timeout=TIMEOUT[scenario],
                    on_line=on_line)
    return run, plan


def tables(results: Mapping[tuple[str, str, str], tuple[GuestRun, object]]) -> str:
    """``{(scenario, configuration, kernel label): (run, plan)}`` as markdown tables, one per scenario and kernel,
    a column per configuration."""
    out = []
    for scenario, cks in CHECKS.items():
        for kernel in dict.fromkeys(k for s, _n, k in results if s == scenario):
            columns = {name: rp for (s, name, k), rp in results.items() if s == scenario and k == kernel}
            out.append(f"{scenario} scenario, guest kernel {kernel}\n\n{checks.table(cks, columns)}")
    return "\n\n".join(out)


def mismatches(results: Mapping[tuple[str, str, str], tuple[GuestRun, object]]) -> list[str]:
    """Every outcome of ``results`` that differs from :func:`vfu_virtio.qemu.checks.expected`; [] if none."""
    bad = []
    for (scenario, name, kernel), (run, plan) in results.items():
        model = config(scenario, name).model
        for check in CHECKS[scenario]:
            got, want = check.run(run, plan), checks.expected(check.name, model, run)
            if got.status != want:
                bad.append(f"{scenario} {name} {kernel} {check.name}: {got.cell()} (expected {want})")
    return bad
