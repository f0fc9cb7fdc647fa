"""The driver audit: every driver requirement of the standard a device can see broken, counted, and written to a file.

:data:`DRIVER_CHECKS` is the catalogue: one :class:`DriverCheck` per driver-normative statement ("Driver
Requirements" of the sections named) that the device side can observe -- a register write, a status sequence, a
descriptor chain, a device-type request. The transport, the PCI function, the rings and the device types report what
they see through ``note(check, detail)``; :class:`Audit` counts each check id, keeps the time and detail of its first
occurrence and logs that first one (one line). How the device answers does not change (the standard leaves a driver's
violation to the device; TD-INDIRECT, TD-QUEUE-ENABLE-0): a violation the device could serve is served, one it
cannot is answered as before (DEVICE_NEEDS_RESET, an error status). ``--strict`` (``vfu-virtio <kind> --audit FILE
--strict``) additionally refuses: the transport sets DEVICE_NEEDS_RESET for every violation.

The audit file (``--audit FILE``) is JSON, rewritten whole (a temporary file renamed over it) when a check is seen
for the first time, at most once a second while counts change, when a client goes away and at shutdown::

    {"format": "vfu-virtio driver audit 1", "device": "crypto", "started": "2026-11-30T12:00:00.000Z",
     "updated": "...", "clients": 1,
     "violations": [{"check": "queue-enable-0", "section": "...", "requirement": "...", "count": 4,
                     "first": "2026-11-30T12:00:01.250Z", "detail": "queue 0: driver wrote 0 to queue_enable"}]}

Times are UTC with milliseconds. ``vfu-virtio audit FILE`` prints :func:`summary` of it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

log = logging.getLogger("vfu_virtio.virtio.audit")

FORMAT = "vfu-virtio driver audit 1"
#: While counts change, the file is rewritten at most this often (seconds); new checks are written at once.
REWRITE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class DriverCheck:
    """One driver requirement the device can observe: stable ``id``, the standard's ``section`` title, the
    ``requirement`` in the project's words."""

    id: str
    section: str
    requirement: str


_BASIC = "Basic Facilities of a Virtio Device"
_INIT = "General Initialization And Device Operation / Device Initialization"
_PCI = "Virtio Transport Options / Virtio Over PCI Bus"
_COMMON = f"{_PCI} / PCI Device Layout / Common configuration structure layout"
_CFG_CAP = f"{_PCI} / PCI Device Layout / PCI configuration access capability"
_NOTIFY = f"{_PCI} / PCI-specific Initialization And Device Operation / Available Buffer Notifications"
_SPLIT = f"{_BASIC} / Virtqueues"
_PACKED = f"{_BASIC} / Packed Virtqueues"
_CRYPTO = "Device Types / Crypto Device"

DRIVER_CHECKS: dict[str, DriverCheck] = {c.id: c for c in (
    # ---- feature negotiation and device status ----
    DriverCheck("feature-not-offered", f"{_BASIC} / Feature Bits",
                "The driver accepts only features the device offered."),
    DriverCheck("feature-dependency", f"{_BASIC} / Feature Bits",
                "The driver does not accept a feature that requires another feature it did not accept (the device "
                "type's dependency rule, e.g. a crypto *_STATELESS_MODE bit without VIRTIO_CRYPTO_F_REVISION_1)."),
    DriverCheck("version-1-not-accepted", "Reserved Feature Bits",
                "The driver accepts VIRTIO_F_VERSION_1 when the device offers it."),
    DriverCheck("features-after-features-ok", _INIT,
                "The driver accepts no new feature bit after setting FEATURES_OK."),
    DriverCheck("init-order", _INIT,
                "The driver sets ACKNOWLEDGE, then DRIVER, then FEATURES_OK: no status bit before the ones of the "
                "steps before it."),
    DriverCheck("driver-ok-without-features-ok", _INIT,
                "The driver sets DRIVER_OK only after FEATURES_OK was set and stayed set."),
    DriverCheck("status-bit-cleared", f"{_BASIC} / Device Status Field",
                "The driver never clears a device_status bit, except by writing 0 (reset)."),
    DriverCheck("reinit-after-failed", f"{_BASIC} / Device Status Field",
                "After setting FAILED, the driver resets the device before initializing it again."),
    DriverCheck("reset-not-awaited", _COMMON,
                "After writing 0 to device_status, the driver reads device_status back as 0 before initializing "
                "the device again."),
    DriverCheck("read-only-field-written", _COMMON,
                "The driver does not write device_feature, num_queues, config_generation, queue_notify_off or "
                "queue_notif_config_data."),
    DriverCheck("device-config-written-early", _INIT,
                "Before FEATURES_OK the driver may read, but does not write, the device-specific configuration."),
    # ---- virtqueue configuration ----
    DriverCheck("queue-size-invalid", _COMMON,
                "queue_size written is a power of 2 without VIRTIO_F_RING_PACKED, and not 0 with it."),
    DriverCheck("queue-enable-before-addresses", _COMMON,
                "The driver writes queue_desc, queue_driver and queue_device before enabling the queue with "
                "queue_enable."),
    DriverCheck("queue-field-while-enabled", _COMMON,
                "The driver configures queue_size and the ring addresses before enabling the queue, not after "
                "(a queue is reconfigured after a queue reset or a device reset)."),
    DriverCheck("queue-enable-0", _COMMON, "The driver does not write 0 to queue_enable (TD-QUEUE-ENABLE-0)."),
    DriverCheck("msix-vector-outside-table",
                f"{_PCI} / PCI-specific Initialization And Device Operation / Device Initialization / "
                "MSI-X Vector Configuration",
                "The driver maps an event only to a vector inside the MSI-X Table (or unmaps it with NO_VECTOR)."),
    # ---- notifications ----
    DriverCheck("notify-before-driver-ok", _INIT,
                "The driver sends no available buffer notification before setting DRIVER_OK."),
    DriverCheck("notify-queue-not-enabled", _NOTIFY,
                "An available buffer notification names a virtqueue of the device that the driver enabled."),
    DriverCheck("notify-value", _NOTIFY,
                "Without VIRTIO_F_NOTIF_CONFIG_DATA the notification value is the virtqueue's index."),
    DriverCheck("notify-width", _NOTIFY,
                "A notification is 16 bits wide without VIRTIO_F_NOTIFICATION_DATA, 32 bits with it."),
    # ---- PCI capabilities ----
    DriverCheck("capability-written", f"{_PCI} / Virtio Structure PCI Capabilities",
                "The driver does not write any field of a virtio structure capability, except the window fields "
                "of the PCI configuration access capability."),
    DriverCheck("cfg-window-unaligned", _CFG_CAP,
                "The window's cap.offset is a multiple of cap.length when the driver accesses pci_cfg_data."),
    DriverCheck("cfg-window-outside", _CFG_CAP,
                "The driver accesses pci_cfg_data only when cap.bar, cap.offset and cap.length address cap.length "
                "bytes inside a structure another virtio capability names."),
    # ---- virtqueues ----
    DriverCheck("ring-misaligned", f"{_SPLIT} / {_PACKED}",
                "Each part of a virtqueue is at an address that is a multiple of its alignment."),
    DriverCheck("used-flags-not-zero", f"{_SPLIT} / Available Buffer Notification Suppression",
                "The driver initializes the used ring's flags to 0 (split virtqueues)."),
    DriverCheck("avail-flags-invalid", f"{_SPLIT} / Used Buffer Notification Suppression",
                "avail.flags is 0 or 1 without VIRTIO_F_EVENT_IDX and 0 with it (split virtqueues)."),
    DriverCheck("avail-idx-invalid", f"{_SPLIT} / The Virtqueue Available Ring",
                "The driver never moves avail.idx back, nor more than queue_size entries ahead of what the device "
                "used (split virtqueues)."),
    DriverCheck("writable-before-readable", f"{_BASIC} / Message Framing",
                "Device-writable descriptors come after every device-readable one."),
    DriverCheck("chain-longer-than-queue-size",
                f"{_SPLIT} / The Virtqueue Descriptor Table / Indirect Descriptors; {_PACKED} / Scatter-Gather "
                "Support",
                "No descriptor chain, an indirect table's included, is longer than the queue size."),
    DriverCheck("indirect-without-feature",
                f"{_SPLIT} / The Virtqueue Descriptor Table / Indirect Descriptors (TD-INDIRECT)",
                "The driver sets VIRTQ_DESC_F_INDIRECT only when VIRTIO_F_INDIRECT_DESC was negotiated."),
    DriverCheck("indirect-with-next", f"{_SPLIT} / The Virtqueue Descriptor Table / Indirect Descriptors",
                "A descriptor does not have both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT."),
    DriverCheck("indirect-nested", f"{_SPLIT} / The Virtqueue Descriptor Table / Indirect Descriptors",
                "No descriptor inside an indirect table has VIRTQ_DESC_F_INDIRECT (one table per descriptor)."),
    DriverCheck("indirect-table-flags", f"{_PACKED} / The Virtqueue Descriptor Table / Indirect Descriptors",
                "No flag but VIRTQ_DESC_F_WRITE is set inside a packed indirect table."),
    DriverCheck("indirect-in-list", f"{_PACKED} / The Virtqueue Descriptor Table / Indirect Descriptors",
                "A descriptor with VIRTQ_DESC_F_INDIRECT is not part of a list linked by VIRTQ_DESC_F_NEXT "
                "(packed virtqueues)."),
    DriverCheck("partial-list", f"{_PACKED} / Scatter-Gather Support",
                "The first descriptor of a list is made available only after the rest of the list (packed "
                "virtqueues)."),
    # ---- device types ----
    DriverCheck("crypto-not-ready", f"{_CRYPTO} / Device configuration layout",
                "The driver sends no request while the configuration's status lacks VIRTIO_CRYPTO_S_HW_READY."),
    DriverCheck("crypto-over-max-size", f"{_CRYPTO} / Device configuration layout",
                "The variable-length fields of a request add up to at most max_size (AMB-13)."),
    DriverCheck("crypto-key-too-long", f"{_CRYPTO} / Device configuration layout",
                "A cipher or AEAD key is at most max_cipher_key_len bytes, a MAC key at most max_auth_key_len "
                "(AMB-14)."),
    DriverCheck("crypto-invalid-session",
                f"{_CRYPTO} / Device Operation / HASH, MAC, Symmetric algorithms, AEAD and AKCIPHER Service "
                "Operation; Session operation: destroy session",
                "A session-mode request or a destroy-session request names a session the device created and did "
                "not destroy."),
    DriverCheck("rpmb-config-written", "Device Types / RPMB Device / Device configuration layout",
                "The driver does not write the RPMB configuration (all its fields are read-only)."),
    DriverCheck("rpmb-frame-partial", "Device Types / RPMB Device / Device Operation",
                "A request's frames travel whole: the device-readable part is whole 512-byte frames (RPMB-D1)."),
)}


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(t * 1000) % 1000:03d}Z"


class Audit:
    """The violations one device saw (see the module docstring); thread-safe (``record`` may come from a device's
    worker thread).

    ``path``: the audit file (None: counted in memory only), written at once (OSError if it cannot be); ``device``:
    the device kind's name, for the file. ``counts`` maps check id -> occurrences. :meth:`record` raises KeyError for
    an id not in :data:`DRIVER_CHECKS` (a device-side bug, caught by the tests).
    """

    def __init__(self, path: str | None = None, device: str = ""):
        self.path = path
        self.device = device
        self.counts: dict[str, int] = {}
        self.clients = 0
        self._first: dict[str, tuple[float, str]] = {}
        self._started = time.time()
        self._lock = threading.Lock()
        self._written = 0.0
        if path is not None:
            self._write()  # the file exists (and is writable) from the start

    def record(self, check: str, detail: str) -> bool:
        """Count one occurrence of ``check``; the first is logged (one line) and written at once. Returns True for the
        first occurrence."""
        entry = DRIVER_CHECKS[check]
        with self._lock:
            n = self.counts.get(check, 0)
            self.counts[check] = n + 1
            if not n:
                self._first[check] = (time.time(), detail)
        if not n:
            log.info("driver: %s [driver audit: %s, \"%s\"]", detail, check, entry.section)
        if self.path is not None and (not n or time.monotonic() - self._written >= REWRITE_INTERVAL_S):
            self.flush()
        return not n

    def snapshot(self) -> dict[str, Any]:
        """The audit as the file holds it (see the module docstring)."""
        with self._lock:
            violations = [{"check": c, "section": DRIVER_CHECKS[c].section,
                           "requirement": DRIVER_CHECKS[c].requirement, "count": n,
                           "first": _utc(self._first[c][0]), "detail": self._first[c][1]}
                          for c, n in sorted(self.counts.items(), key=lambda kv: self._first[kv[0]][0])]
            return {"format": FORMAT, "device": self.device, "started": _utc(self._started),
                    "updated": _utc(time.time()), "clients": self.clients, "violations": violations}

    def flush(self) -> None:
        """Rewrite the audit file now (nothing without a path); an OSError is logged, not raised."""
        if self.path is None:
            return
        try:
            self._write()
        except OSError as e:
            log.warning("driver audit: cannot write %s: %s", self.path, e)

    def _write(self) -> None:
        data = self.snapshot()
        self._written = time.monotonic()
        fd, tmp = tempfile.mkstemp(prefix=".audit-", dir=os.path.dirname(os.path.abspath(self.path)))
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1)
                f.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class AuditFileError(ValueError):
    """An audit file that cannot be read or is not one (the message names the file and why)."""


def load(path: str) -> dict[str, Any]:
    """Read an audit file written by :class:`Audit`; :class:`AuditFileError` if it is missing, unreadable or of
    another format."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise AuditFileError(f"{path}: not a readable audit file: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("violations"), list):
        raise AuditFileError(f"{path}: not a vfu-virtio driver audit (format {FORMAT!r})")
    return data


def catalogue(markdown: bool = False) -> str:
    """The driver checks: id, section, requirement (``vfu-virtio audit --list``); or a Markdown table (the
    README's)."""
    checks = DRIVER_CHECKS.values()
    if markdown:
        return "\n".join(["| check | section | requirement |", "|---|---|---|",
                          *(f"| `{c.id}` | {c.section} | {c.requirement} |" for c in checks)])
    return "\n".join(f"{c.id}\n    {c.section}\n    {c.requirement}" for c in checks)


def summary(data: dict[str, Any]) -> str:
    """The audit ``data`` (:func:`load`) for a person: one line per broken requirement (count, check id, first
    time), its section, the requirement and the first occurrence's detail."""
    violations = data["violations"]
    total = sum(v["count"] for v in violations)
    head = (f"driver audit of the {data.get('device') or '?'} device, {data.get('started')} .. {data.get('updated')}, "
            f"{data.get('clients', 0)} client(s): ")
    if not violations:
        return head + f"no driver requirement broken (of {len(DRIVER_CHECKS)} checked)"
    lines = [head + f"{len(violations)} of {len(DRIVER_CHECKS)} driver requirements broken, {total} time(s)"]
    for v in violations:
        lines += [f"  {v['check']}: {v['count']} time(s), first {v['first']}",
                  f"      section:     {v['section']}",
                  f"      requirement: {v['requirement']}",
                  f"      first seen:  {v['detail']}"]
    return "\n".join(lines)
