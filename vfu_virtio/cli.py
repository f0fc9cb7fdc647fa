"""The ``vfu-virtio`` command line (click): serve a device of any registered kind, list the kinds, drive an
RPMB device from the host, print the QEMU command line, check a device against the standard (``conform``,
:mod:`vfu_virtio.conform`), summarise a driver audit (``audit``, :mod:`vfu_virtio.virtio.audit`).

``vfu-virtio <kind>`` exists for every kind of :mod:`vfu_virtio.devices.registry` (built-in, or named in
``VFU_VIRTIO_DEVICES``): its options are the kind's options (data: flag, limits, default, help with the unit)
plus the common ``--socket``, ``--state``, ``--instance`` and ``--once``, under the stored-settings rule
(:data:`SETTINGS_RULE`). ``vfu-virtio kinds`` lists the registry. Every option names its unit and limit; bad
values are refused with a message naming the value and the limit. Logs go to stderr with levels
(``--log-level``). ``--ready-fd N``: a serving process writes ``ready`` to descriptor N once its socket
listens (used by :mod:`vfu_virtio.client.spawn`). Every serve command also takes the transport's ``--audit FILE``
(the driver audit), ``--strict``, ``--inject SPEC`` (repeatable: fault injection, :mod:`vfu_virtio.virtio.inject`)
and ``--inject-seed N``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import sys
from typing import Iterable

import click

from .conform.cli import conform_cmd
from .devices import registry
from .devices.registry import DeviceKind, Option, RegistryError
from .virtio import audit, inject
from .virtio.transport import RING_CHOICES

log = logging.getLogger("vfu_virtio")

LOG_LEVELS = ["debug", "info", "warning", "error"]

SETTINGS_RULE = ("Stored settings, the same rule for every kind: an option given on the command line wins "
                 "and is stored with the instance; an option left out takes the stored value, else its "
                 "default; an option fixed at creation is refused if it differs from the stored value.")

#: The line a serving process writes to ``--ready-fd`` once its vfio-user socket is listening.
READY_LINE = b"ready\n"

#: A QEMU size as both ``-m`` and ``memory-backend-memfd,size=`` read it the same way: a number and a unit.
_QEMU_SIZE = re.compile(r"(?:[1-9][0-9]*|[0-9]+\.[0-9]*[1-9][0-9]*)[KMGT]", re.IGNORECASE)


def _setup_logging(level: str) -> int:
    lvl = getattr(logging, level.upper())
    logging.basicConfig(level=lvl, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    return lvl


class _Main(click.Group):
    """The fixed commands, plus one serve command per registered device kind (built when asked for)."""

    def kinds(self) -> dict[str, DeviceKind]:
        try:
            kinds = registry.kinds()
        except RegistryError as e:
            raise click.ClickException(str(e)) from e
        clash = sorted(set(kinds) & set(self.commands))
        if clash:
            raise click.ClickException(f"device kind {clash[0]!r} has the name of a vfu-virtio command")
        return kinds

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*self.commands, *self.kinds()])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        kind = self.kinds().get(name)
        return _serve_command(kind) if kind else None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="Least severe log level written to stderr (libvfio-user's own lines included).")
@click.option("--ready-fd", type=click.IntRange(0), metavar="N",
              help="Once the device's vfio-user socket listens, write the line 'ready' to the open file "
                   "descriptor N and close it (for supervisors: a connect after it is never refused).")
@click.pass_context
def main(ctx: click.Context, log_level: str, ready_fd: int | None) -> None:
    """vfu-virtio: a virtio-pci function served over vfio-user; `vfu-virtio kinds` lists the device kinds.

    Attach it to QEMU with `-device vfio-user-pci` (see `vfu-virtio qemu-cmdline`) or drive it with the
    project's own vfio-user driver (`vfu_virtio.client`).

    {rule}
    """
    if ready_fd is not None:
        try:
            os.fstat(ready_fd)
        except OSError:
            raise click.BadParameter(f"{ready_fd} is not an open file descriptor", param_hint="--ready-fd") from None
    ctx.obj = {"log_level": _setup_logging(log_level), "ready_fd": ready_fd}


main.help = main.help.replace("{rule}", SETTINGS_RULE)


# ---- serving a device ---------------------------------------------------------------------------------------
def _common_options() -> list[click.Option]:
    return [
        click.Option(["--socket", "socket"], required=True, type=click.Path(dir_okay=False),
                     help="vfio-user UNIX socket path to listen on (a stale socket file is replaced)."),
        click.Option(["--state", "state"], required=True, type=click.Path(dir_okay=False),
                     help="SQLite state store shared by all devices (created with mode 0600)."),
        click.Option(["--instance"], default="0", show_default=True,
                     help="Device instance name inside the store (several devices can share one file)."),
        click.Option(["--once"], is_flag=True, help="Exit after the first client disconnects."),
        click.Option(["--ring", "rings"], type=click.Choice(RING_CHOICES), default="any", show_default=True,
                     help="Virtqueue formats offered: any (split, or packed when the driver accepts "
                          "VIRTIO_F_RING_PACKED), split (RING_PACKED withheld), packed (RING_PACKED required: "
                          "FEATURES_OK is refused without it). A transport setting: not stored."),
        click.Option(["--audit", "audit_path"], type=click.Path(dir_okay=False), metavar="FILE",
                     help="Driver audit: record every driver requirement of the standard the driver breaks (check "
                          "id, section, first time, count) in the JSON file FILE, without changing how the device "
                          "answers. `vfu-virtio audit FILE` summarises it."),
        click.Option(["--strict"], is_flag=True,
                     help="With the driver audit: also refuse, by setting DEVICE_NEEDS_RESET, whenever the driver "
                          "breaks a requirement."),
        click.Option(["--inject", "faults"], multiple=True, metavar="SPEC",
                     help="Fault injection (repeatable): KIND[:NAME=VALUE,...] with KIND one of "
                          f"{', '.join(inject.KINDS)}; filters queue=, op=, min-bytes=, max-bytes=, after=, count=, "
                          "rate=; error takes status=, delay ms=, reorder window= and ms=, clear-hw-ready ms= and "
                          "restore-ms=, drop-irq and dup-irq vector=N|intx (README, Fault injection)."),
        click.Option(["--inject-seed", "fault_seed"], type=click.IntRange(0), default=0, show_default=True,
                     help="Seed of the fault injection's random choices (rate=): the same seed, the same faults."),
    ]


def _kind_option(opt: Option) -> click.Option:
    """The click option of ``opt``: left out it is None, so the stored value or the default applies."""
    kind = click.IntRange(*opt.range) if opt.range is not None else click.Choice(opt.choices)
    fixed = " Fixed when the instance is created: another value later is refused." if opt.fixed else ""
    return click.Option([opt.flag, opt.dest], type=kind, default=None, help=opt.help + fixed,
                        show_default=f"the stored value, else {opt.default}")


def _serve_command(kind: DeviceKind) -> click.Command:
    """``vfu-virtio <kind.name>``: open the instance under the stored-settings rule and serve it."""
    def serve(obj: dict, socket: str, state: str, instance: str, once: bool, rings: str, audit_path: str | None,
              strict: bool, faults: tuple[str, ...], fault_seed: int, **given) -> None:
        from .store import StoreError
        try:
            transport = dict(audit_path=audit_path, strict=strict, faults=tuple(map(inject.parse, faults)),
                             fault_seed=fault_seed)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--inject") from e
        try:
            device = registry.open_device(kind, state, instance, given)
        except (StoreError, RegistryError, ValueError) as e:
            raise click.ClickException(str(e)) from e
        _serve(obj, kind, device, socket, once, rings, transport)

    return click.Command(
        kind.name, callback=click.pass_obj(serve), params=[*_common_options(), *map(_kind_option, kind.options)],
        short_help=kind.summary,
        help=f"Serve one {kind.name} device (virtio id {kind.virtio_id}, PCI {kind.pci_id}, class "
             f"0x{kind.pci_class_code:06x}) on SOCKET; its settings are kept in the --state store under "
             f"--instance.\n\n{kind.summary}.\n\n{SETTINGS_RULE}")


def _serve(obj: dict, kind: DeviceKind, device, socket: str, once: bool, rings: str, transport: dict) -> None:
    from .libvfio_user import VfuError
    from .libvfio_user._lib import LibraryNotFound
    from .server import DeviceServer
    try:
        # realized: the socket listens
        server = DeviceServer(device, socket, obj["log_level"], rings=rings, pci_class=kind.pci_class, **transport)
    except (VfuError, LibraryNotFound, ValueError, OSError) as e:
        device.close()
        raise click.ClickException(str(e)) from e
    # a supervisor may stop the server as soon as it is ready, before serve_forever installs its own handlers
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, _f: (log.info("%s: shutting down", signal.Signals(s).name), server.stop()))
    if obj["ready_fd"] is not None:
        _signal_ready(obj["ready_fd"])
    server.serve_forever(max_clients=1 if once else None)


def _signal_ready(fd: int) -> None:
    """Write :data:`READY_LINE` to ``fd`` and close it; a reader that went away costs one warning."""
    try:
        os.write(fd, READY_LINE)
    except OSError as e:
        log.warning("--ready-fd %d: readiness not signalled: %s", fd, e.strerror)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


# ---- the registry ---------------------------------------------------------------------------------------------
KINDS_COLUMNS = ("kind", "virtio id", "PCI id", "class", "summary", "options")


def kinds_table(kinds: Iterable[DeviceKind], markdown: bool = False) -> str:
    """The kinds as a table: aligned text columns, or Markdown (the README's device-kinds table)."""
    rows = [[r[c] for c in KINDS_COLUMNS] for r in registry.described(kinds)]
    header = [*KINDS_COLUMNS[:-1], "serve options: limits (default)"]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---:|---|---|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]) for r in [header, *rows])


@main.command("kinds")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (the README's device-kinds table).")
def kinds_cmd(markdown: bool) -> None:
    """List the registered device kinds: name, virtio id, PCI id, class code, summary, serve options."""
    click.echo(kinds_table(main.kinds().values(), markdown))


# ---- the host-side RPMB client ----------------------------------------------------------------------------------
@main.group("rpmb-client")
@click.option("--socket", "socket", required=True, type=click.Path(dir_okay=False),
              help="vfio-user socket of a running `vfu-virtio rpmb` server.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
              help="The 32-byte authentication key: 32 raw bytes or 64 hex digits. Needed to program the "
                   "key, to write, and to verify response MACs.")
@click.pass_context
def rpmb_client(ctx, socket, key_file):
    """Host-side RPMB client through the project's vfio-user driver (no guest needed).

    Every response's MAC (when the key is known) and nonce are checked; a result other than OK exits 1.
    """
    key = None
    if key_file:
        raw = open(key_file, "rb").read()
        key = raw if len(raw) == 32 else bytes.fromhex(raw.decode("ascii", "replace").strip())
        if len(key) != 32:
            raise click.BadParameter(f"{key_file} holds {len(key)} bytes, not a 32-byte key", param_hint="--key-file")
    ctx.obj.update(socket=socket, key=key)


def _rpmb_session(ctx, op):
    from .abi import rpmb as F
    from .client import VfioUserError, VirtioDriverError
    from .client.rpmb import RpmbClient, RpmbResponseError
    try:
        with RpmbClient.connect(ctx.obj["socket"], ctx.obj["key"]) as client:
            result, message = op(client)
    except (RpmbResponseError, VfioUserError, VirtioDriverError, OSError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    name = F.RESULT_NAMES.get(result, f"{result:#06x}")
    if result != F.VIRTIO_RPMB_RES_OK:
        raise click.ClickException(f"result {name}" + (f" ({message})" if message else ""))
    click.echo(f"result {name}" + (f", {message}" if message else ""))


@rpmb_client.command("program-key")
@click.pass_context
def rpmb_program_key(ctx):
    """Program the --key-file key (one-time: a second attempt answers WRITE_FAILURE)."""
    if ctx.obj["key"] is None:
        raise click.UsageError("program-key needs --key-file")
    _rpmb_session(ctx, lambda c: (c.program_key(ctx.obj["key"]), ""))


@rpmb_client.command("read-counter")
@click.pass_context
def rpmb_read_counter(ctx):
    """Read the write counter (fresh nonce; MAC checked with --key-file if given)."""
    def op(c):
        result, counter = c.read_counter()
        return result, f"write counter {counter}"
    _rpmb_session(ctx, op)


@rpmb_client.command("write")
@click.option("--address", type=click.IntRange(0, 0xFFFF), required=True, help="First 256-byte block.")
@click.option("--data-hex", help="Data as hex digits.")
@click.option("--data-file", type=click.Path(exists=True, dir_okay=False), help="Data from a file.")
@click.pass_context
def rpmb_write(ctx, address, data_hex, data_file):
    """Authenticated write at --address; the data is zero-padded to whole 256-byte blocks, sent in one
    request (at most max_wr_cnt blocks)."""
    if ctx.obj["key"] is None or (data_hex is None) == (data_file is None):
        raise click.UsageError("write needs --key-file and exactly one of --data-hex, --data-file")
    data = bytes.fromhex(data_hex) if data_hex is not None else open(data_file, "rb").read()
    if not data:
        raise click.UsageError("no data to write")
    data += bytes(-len(data) % 256)
    blocks = [data[i:i + 256] for i in range(0, len(data), 256)]

    def op(c):
        result, counter = c.write(address, blocks)
        return result, f"{len(blocks)} block(s) at {address}, write counter {counter}"
    _rpmb_session(ctx, op)


@rpmb_client.command("read")
@click.option("--address", type=click.IntRange(0, 0xFFFF), required=True, help="First 256-byte block.")
@click.option("--count", type=click.IntRange(1, 0xFFFF), default=1, show_default=True,
              help="Blocks to read in one request (at most max_rd_cnt).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the data here instead of hex to stdout.")
@click.pass_context
def rpmb_read(ctx, address, count, output):
    """Authenticated read of --count blocks at --address (fresh nonce; MAC checked with --key-file)."""
    def op(c):
        result, blocks = c.read(address, count)
        if result == 0:
            if output:
                with open(output, "wb") as f:
                    f.write(b"".join(blocks))
            else:
                for i, b in enumerate(blocks):
                    click.echo(f"{address + i:5d}: {b.hex()}")
        return result, f"{len(blocks)} block(s) at {address}"
    _rpmb_session(ctx, op)


main.add_command(conform_cmd)


@main.command("audit")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the audit file's JSON instead (after checking it).")
@click.option("--list", "list_only", is_flag=True, help="Print the driver checks (id, section, requirement) instead; "
              "no FILE needed.")
@click.option("--markdown", is_flag=True, help="With --list: a Markdown table (the README's).")
def audit_cmd(path: str | None, as_json: bool, list_only: bool, markdown: bool) -> None:
    """Summarise the driver audit FILE a device wrote (`vfu-virtio <kind> --audit FILE`): each driver requirement
    the driver broke, its check id, the standard's section, the first time and the count. Exit status 1 if the
    driver broke any."""
    if list_only:
        click.echo(audit.catalogue(markdown))
        return
    if path is None:
        raise click.UsageError("FILE is needed (or --list)")
    try:
        data = audit.load(path)
    except audit.AuditFileError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(data, indent=1) if as_json else audit.summary(data))
    if data["violations"]:
        sys.exit(1)


@main.command("qemu-cmdline")
@click.option("--socket", "sockets", multiple=True, required=True,
              help="Device socket to attach (repeat for several devices).")
@click.option("--memory", default="512M", show_default=True,
              help="Guest RAM size with its unit, K/M/G/T (shared memfd backend), e.g. 512M or 2G.")
def qemu_cmdline(sockets, memory):
    """Print the QEMU arguments that attach the given vfio-user sockets (shared guest RAM required), quoted
    for a POSIX shell."""
    if not _QEMU_SIZE.fullmatch(memory):
        raise click.BadParameter(f"{memory!r} is not a QEMU size such as 512M or 2G (a number and K, M, G or T)",
                                 param_hint="--memory")
    args = ["-object", f"memory-backend-memfd,id=mem,size={memory},share=on",
            "-machine", "q35,memory-backend=mem", "-m", memory]
    for s in sockets:
        args += ["-device", json.dumps({"driver": "vfio-user-pci", "socket": {"path": s, "type": "unix"}})]
    click.echo(" ".join(map(shlex.quote, args)))


if __name__ == "__main__":
    main()
