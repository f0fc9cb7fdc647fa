"""The run's results for a person (:func:`table`), for programs (:func:`to_json`) and for CI systems
(:func:`junit`, the JUnit XML most of them read: one ``testsuite``, a ``testcase`` per check with ``failure``,
``skipped`` or ``error``), and the catalogue itself (:func:`catalogue`)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Iterable

from .catalogue import ERROR, FAIL, PASS, SKIP, Check
from .runner import Report
from .target import Facts

_OBSERVED_BYTES = 64  # shown in the table; JSON and JUnit carry all of them


def device_line(f: Facts) -> str:
    """One line naming the device: socket, PCI ids, virtio id, offered features, queues."""
    kind = {20: "crypto", 28: "RPMB"}.get(f.virtio_id, "a type this tool does not know")
    line = f"{f.socket}: PCI {f.vendor_id:04x}:{f.device_id:04x}, virtio device {f.virtio_id} ({kind})"
    if f.driver_error:
        return line + f"; the project's driver cannot use it: {f.driver_error}"
    return line + f", features {f.features:#x}, {f.num_queues} queue(s), {f.msix_vectors} MSI-X vector(s)"


def summary(report: Report) -> str:
    counts = ", ".join(f"{report.count(s)} {s}" for s in (PASS, FAIL, SKIP, ERROR))
    return f"{len(report.results)} checks: {counts} ({report.seconds:.1f} s)"


def result_line(check: Check, status: str, detail: str, observed: bytes, width: int) -> str:
    """``STATUS  id  detail [observed: hex]``."""
    seen = ""
    if observed:
        shown = observed[:_OBSERVED_BYTES].hex(" ")
        seen = f"  [observed: {shown}{' ...' if len(observed) > _OBSERVED_BYTES else ''}]"
    return f"{status:<5}  {check.id:<{width}}  {detail}{seen}"


def table(report: Report) -> str:
    """The results, one line per check (FAIL lines carry the observed bytes), between the device line and a count."""
    width = max((len(c.id) for c, _o in report.results), default=0)
    lines = [device_line(report.facts)]
    lines += [result_line(c, o.status, o.detail, o.observed, width) for c, o in report.results]
    return "\n".join([*lines, summary(report)])


def to_json(report: Report) -> str:
    f = report.facts
    return json.dumps({
        "device": {"socket": f.socket, "vendor_id": f.vendor_id, "device_id": f.device_id, "virtio_id": f.virtio_id,
                   "features": f.features, "num_queues": f.num_queues, "msix_vectors": f.msix_vectors,
                   "driver_error": f.driver_error},
        "results": [{"id": c.id, "section": c.section, "requirement": c.requirement, "level": c.level,
                     "status": o.status, "detail": o.detail, "observed": o.observed.hex(),
                     "seconds": round(o.seconds, 3)} for c, o in report.results],
        "counts": {s: report.count(s) for s in (PASS, FAIL, SKIP, ERROR)}, "seconds": round(report.seconds, 3),
    }, indent=1)


def junit(report: Report) -> bytes:
    """JUnit XML: testsuite ``vfu-virtio conform``, a testcase per check (classname its area)."""
    suite = ET.Element("testsuite", name="vfu-virtio conform", tests=str(len(report.results)),
                       failures=str(report.count(FAIL)), errors=str(report.count(ERROR)),
                       skipped=str(report.count(SKIP)), time=f"{report.seconds:.3f}")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="device", value=device_line(report.facts))
    for check, o in report.results:
        case = ET.SubElement(suite, "testcase", classname=f"conform.{check.area}", name=check.id,
                             time=f"{o.seconds:.3f}")
        text = f"{check.section}\n{check.level}: {check.requirement}\n{o.detail}"
        if o.observed:
            text += f"\nobserved: {o.observed.hex(' ')}"
        if o.status == FAIL:
            ET.SubElement(case, "failure", message=o.detail).text = text
        elif o.status == ERROR:
            ET.SubElement(case, "error", message=o.detail).text = text
        elif o.status == SKIP:
            ET.SubElement(case, "skipped", message=o.detail)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def catalogue(checks: Iterable[Check], markdown: bool = False) -> str:
    """The checks for ``--list``: id and level, then the section and the requirement, indented; or a Markdown table
    (the README's catalogue)."""
    if markdown:
        rows = [f"| `{c.id}` | {c.level} | {c.section} | {c.requirement} |" for c in checks]
        return "\n".join(["| check | level | section | requirement |", "|---|---|---|---|", *rows])
    return "\n".join(f"{c.id}  ({c.level})\n    {c.section}\n    {c.requirement}" for c in checks)
