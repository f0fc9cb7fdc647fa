"""What the guest said: the ``VFU-*`` console markers of ``guest/init`` and its scenario scripts, parsed.

A marker is ``VFU-<TAG> key=value ...``; the tags of :data:`RAW_TAGS` carry one raw line instead (``VFU-DMESG``
a dmesg line, ``VFU-TCRYPTLOG`` one that tcrypt caused, ``VFU-DPDKOUT`` a result line of a DPDK program). It may
start mid-line when a kernel message interleaved with the console, so it is searched for, not matched
at the start. :class:`GuestReport` keeps every marker in order and offers the views the checks use.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_MARKER = re.compile(r"VFU-([A-Z]+)(?: (.*))?$")
_KERNEL_LINE = re.compile(r"\[\s*\d+\.\d+\] .*")
RAW_TAGS = frozenset({"DMESG", "DPDKOUT", "TCRYPTLOG"})
_COMPLAINT = re.compile(r"BUG|WARNING|Oops|Call Trace|panic|virtio|vfio|pci|crypto|alg:", re.IGNORECASE)


@dataclass(frozen=True)
class Marker:
    tag: str
    fields: dict[str, str]
    text: str  # everything after the tag


@dataclass
class GuestReport:
    markers: list[Marker] = field(default_factory=list)
    #: kernel messages that reached the console: with ``quiet`` only errors and worse (and the power-off)
    kernel_console: list[str] = field(default_factory=list)

    def find(self, tag: str, **match: str) -> list[dict[str, str]]:
        """Field dicts of the ``tag`` markers whose fields equal ``match``."""
        return [m.fields for m in self.markers
                if m.tag == tag and all(m.fields.get(k) == v for k, v in match.items())]

    @property
    def done(self) -> bool:
        return any(m.tag == "DONE" for m in self.markers)

    @property
    def last_step(self) -> str:
        steps = self.find("STEP")
        return steps[-1]["name"] if steps else "(none)"

    def pci(self, phase: str = "boot", device: str | None = None) -> list[dict[str, str]]:
        return [d for d in self.find("PCI", phase=phase) if device is None or d["device"] == device]

    def virtio(self, phase: str = "boot", device: str | None = None) -> list[dict[str, str]]:
        return [d for d in self.find("VIRTIO", phase=phase) if device is None or d["device"] == device]

    def algs(self, phase: str = "boot") -> dict[str, dict[str, str]]:
        """/proc/crypto entries by a virtio driver, by driver name."""
        return {a["driver"]: a for a in self.find("ALG", phase=phase)}

    def afalg(self, phase: str = "boot") -> dict[int, dict[str, str]]:
        """AF_ALG results by size: ``result`` (ok/mismatch/error:...), ``enc_sha256``, ``dec_sha256``."""
        return {int(a["size"]): a for a in self.find("AFALG", phase=phase)}

    def irqs(self, phase: str) -> dict[str, dict[str, str]]:
        """/proc/interrupts virtio lines by name (``virtio0-config``, ``virtio0-dataq.0``, ...)."""
        return {i["name"]: i for i in self.find("IRQ", phase=phase)}

    def dmesg(self) -> list[str]:
        return [m.text for m in self.markers if m.tag == "DMESG"]

    def kernel_complaints(self) -> list[str]:
        """Console kernel messages about bugs, warnings, or the virtio, PCI and crypto layers."""
        return [ln for ln in self.kernel_console if _COMPLAINT.search(ln)]


def parse(console: str) -> GuestReport:
    report = GuestReport()
    for line in console.splitlines():
        at = line.find("VFU-")
        m = _MARKER.match(line[at:].rstrip()) if at >= 0 else None
        kernel = _KERNEL_LINE.search(line[:at] if m else line)
        if kernel:
            report.kernel_console.append(kernel.group(0).rstrip())
        if not m:
            continue
        text = m.group(2) or ""
        fields = {} if m.group(1) in RAW_TAGS else dict(p.split("=", 1) for p in text.split() if "=" in p)
        report.markers.append(Marker(m.group(1), fields, text))
    return report
