"""``vfu-virtio conform SOCKET``: the catalogue against a vfio-user virtio-pci device, from the command line.

Exit status: 0 every check PASSed or was SKIPped; 1 a check FAILed; 2 a check ended in ERROR (and none FAILed), or
nothing usable answers on the socket; 3 the device is not a virtio device (nothing to check).
"""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import click

from . import report as out
from .catalogue import ordered
from .devtypes import CRYPTO_LAYOUTS
from .runner import DEFAULT_TIMEOUT_S, UnknownCheck, run, select
from .target import NotVirtio, Unreachable

EXIT_NOT_VIRTIO = 3
EXIT_UNREACHABLE = 2


def _patterns(values: tuple[str, ...]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _key(path: str) -> bytes:
    raw = open(path, "rb").read()
    key = raw if len(raw) == 32 else bytes.fromhex(raw.decode("ascii", "replace").strip() or "zz")
    if len(key) != 32:
        raise click.BadParameter(f"{path} holds {len(key)} bytes, not a 32-byte key", param_hint="--rpmb-key")
    return key


def _junit_discovery(path: str, kind: str, message: str) -> None:
    """A JUnit file for a run that found nothing to check: one testcase ``discovery`` with ``kind`` (error, skipped)."""
    suite = ET.Element("testsuite", name="vfu-virtio conform", tests="1", failures="0",
                       errors="1" if kind == "error" else "0", skipped="1" if kind == "skipped" else "0")
    ET.SubElement(ET.SubElement(suite, "testcase", classname="conform", name="discovery"), kind, message=message)
    with open(path, "wb") as f:
        f.write(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


@click.command("conform")
@click.argument("socket", required=False, type=click.Path(dir_okay=False))
@click.option("--list", "list_only", is_flag=True, help="Print the catalogue (id, level, section, requirement) and "
              "exit; no SOCKET needed.")
@click.option("--markdown", is_flag=True, help="With --list: a Markdown table (the README's catalogue).")
@click.option("--only", multiple=True, metavar="IDS", help="Run only these checks: ids or globs, comma-separated or "
              "repeated (e.g. --only 'split.*,pci.revision').")
@click.option("--skip", multiple=True, metavar="IDS", help="Leave these checks out (ids or globs, as --only).")
@click.option("--ring", type=click.Choice(["auto", "split", "packed"]), default="auto", show_default=True,
              help="Virtqueue format of the ring.* and other checks that work on either (auto: packed when the "
                   "device offers VIRTIO_F_RING_PACKED); split.* and packed.* checks use their own.")
@click.option("--timeout", type=click.FloatRange(1.0), default=DEFAULT_TIMEOUT_S, show_default=True, metavar="S",
              help="Seconds one check may take; a vfio-user reply is awaited at most min(5, S/2) seconds.")
@click.option("--rpmb-key", "rpmb_key_file", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
              help="An RPMB device's programmed authentication key (32 raw bytes or 64 hex digits): the RPMB checks "
                   "then verify response MACs and expect the key to be there. The tool never programs a key.")
@click.option("--crypto-layout", type=click.Choice(sorted(CRYPTO_LAYOUTS)), default="standard", show_default=True,
              help="The configuration layout a crypto device has: the published standard's, the v16 patch's or the "
                   "asymmetric-service RFC v3's (the drafts' feature bits share the standard's numbers, so it "
                   "cannot be told from the device).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the results as JUnit XML to FILE (for CI systems).")
def conform_cmd(socket: str | None, list_only: bool, markdown: bool, only: tuple[str, ...], skip: tuple[str, ...],
                ring: str, timeout: float, rpmb_key_file: str | None, crypto_layout: str, as_json: bool,
                junit_path: str | None) -> None:
    """Check the vfio-user virtio-pci device on SOCKET against the device requirements of the virtio standard.

    Each check drives the device through the project's own driver and reports PASS, FAIL (with the bytes it
    observed), SKIP (why: a feature not offered, a device type it does not know) or ERROR (the device did not
    answer, a time limit ran out). Exit status 1 on any FAIL, 2 on an ERROR (or nothing answering), 3 when SOCKET
    serves no virtio device.
    """
    if list_only:
        click.echo(out.catalogue(ordered(), markdown))
        return
    if socket is None:
        raise click.UsageError("SOCKET is needed (or --list)")
    try:
        checks = select(_patterns(only), _patterns(skip))
    except UnknownCheck as e:
        raise click.BadParameter(str(e), param_hint="--only/--skip") from None
    width = max((len(c.id) for c in checks), default=0)
    stream = {} if as_json else dict(
        on_start=lambda facts: click.echo(out.device_line(facts)),
        on_result=lambda c, o: click.echo(out.result_line(c, o.status, o.detail, o.observed, width)))
    rpmb_key = _key(rpmb_key_file) if rpmb_key_file else None
    try:
        report = run(socket, checks, timeout, ring, rpmb_key, crypto_layout=crypto_layout, **stream)
    except NotVirtio as e:
        click.echo(f"{socket}: {e}; nothing to check")
        if junit_path:
            _junit_discovery(junit_path, "skipped", str(e))
        sys.exit(EXIT_NOT_VIRTIO)
    except Unreachable as e:
        click.echo(f"ERROR  discovery  {e}")
        if junit_path:
            _junit_discovery(junit_path, "error", str(e))
        sys.exit(EXIT_UNREACHABLE)
    click.echo(out.to_json(report) if as_json else out.summary(report))
    if junit_path:
        with open(junit_path, "wb") as f:
            f.write(out.junit(report))
    sys.exit(report.exit_status)
