"""The ``vfu-virtio`` command line (click): serve a device of any registered kind, list the kinds, print the QEMU
command line, summarise a driver audit file (``audit``); the other subcommands (``rpmb-client``, ``crypto-client``,
``status``, ``info``) are in :mod:`vfu_virtio.commands`, ``conform`` in :mod:`vfu_virtio.conform`.

``vfu-virtio <kind>`` exists for every kind of :mod:`vfu_virtio.devices.registry` (built-in, or named in
``VFU_VIRTIO_DEVICES``): its options are the kind's options (data: flag, limits, default, help with the unit)
plus the common ``--socket``, ``--state``, ``--instance``, ``--once`` and ``--ring``, under the stored-settings rule
(:data:`SETTINGS_RULE`). ``vfu-virtio kinds`` lists the registry. Every option names its unit and limit; bad
values are refused with a message naming the value and the limit. Before anything is written (the store, the
instance's settings) a serve command checks what can fail: libvfio-user loads, both socket paths (vfio-user and
status) fit the 107-byte limit in an existing writable directory and nobody serves them. Logs go to stderr
(:mod:`vfu_virtio.logs`: ``--log-level`` in any case and ``--log-format text|json``, before or after the
subcommand). ``--ready-fd N``: a serving process writes ``ready`` to descriptor N once its socket listens (used by
:mod:`vfu_virtio.client.spawn`). ``--version`` prints the package version. Every serve command also takes the
transport's ``--audit FILE`` (the driver audit), ``--strict``, ``--inject SPEC`` (repeatable: fault injection,
:mod:`vfu_virtio.virtio.inject`) and ``--inject-seed N``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
from typing import Iterable

import click

from . import __version__, logs, unixsock
from .commands.common import log_options, with_log_options
from .devices import registry
from .devices.registry import DeviceKind, Option, RegistryError
from .virtio import audit, inject
from .virtio.notify_area import NOTIFY_CHOICES
from .virtio.transport import DEFAULT_POLL_US, RING_CHOICES

log = logging.getLogger("vfu_virtio")

SETTINGS_RULE = ("Stored settings, the same rule for every kind: an option given on the command line wins "
                 "and is stored with the instance; an option left out takes the stored value, else its "
                 "default; an option fixed at creation is refused if it differs from the stored value.")

#: The line a serving process writes to ``--ready-fd`` once its vfio-user socket is listening.
READY_LINE = b"ready\n"

#: A QEMU size as both ``-m`` and ``memory-backend-memfd,size=`` read it the same way: a number and a unit.
_QEMU_SIZE = re.compile(r"(?:[1-9][0-9]*|[0-9]+\.[0-9]*[1-9][0-9]*)[KMGT]", re.IGNORECASE)


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
@click.version_option(__version__, "--version", prog_name="vfu-virtio", message="%(prog)s %(version)s")
@click.option("--ready-fd", type=click.IntRange(0), metavar="N",
              help="Once the device's vfio-user socket listens, write the line 'ready' to the open file "
                   "descriptor N and close it (for supervisors: a connect after it is never refused).")
@click.pass_context
def main(ctx: click.Context, ready_fd: int | None) -> None:
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
    obj = ctx.ensure_object(dict)
    if "log_level" not in obj:  # no --log-level / --log-format before the subcommand
        obj["log_level"] = logs.setup()
    obj["ready_fd"] = ready_fd


main.help = main.help.replace("{rule}", SETTINGS_RULE)
main.params.extend(log_options())


# ---- serving a device ---------------------------------------------------------------------------------------
def _common_options() -> list[click.Option]:
    return [
        click.Option(["--socket", "socket"], required=True, type=click.Path(dir_okay=False),
                     help="vfio-user UNIX socket path to listen on, at most 107 bytes (a stale socket file is "
                          "replaced; one another process serves is refused). The status socket is beside it: "
                          "SOCKET.status (`vfu-virtio status SOCKET`)."),
        click.Option(["--state", "state"], required=True, type=click.Path(dir_okay=False),
                     help="SQLite state store shared by all devices (created with mode 0600)."),
        click.Option(["--instance"], default="0", show_default=True,
                     help="Device instance name inside the store (several devices can share one file)."),
        click.Option(["--once"], is_flag=True, help="Exit after the first client disconnects."),
        click.Option(["--ring", "rings"], type=click.Choice(RING_CHOICES), default="any", show_default=True,
                     help="Virtqueue formats offered: any (split, or packed when the driver accepts "
                          "VIRTIO_F_RING_PACKED), split (RING_PACKED withheld), packed (RING_PACKED required: "
                          "FEATURES_OK is refused without it). A transport setting: not stored."),
        click.Option(["--poll-us", "poll_us"], type=click.IntRange(0, 60_000_000), default=DEFAULT_POLL_US,
                     show_default=True,
                     help="After a virtqueue runs dry, keep its available buffer notifications off and poll it for "
                          "this many microseconds (restarted by each request) before enabling them again; 0 "
                          "enables them at once. A loop setting: not stored."),
        click.Option(["--notify", "notify"], type=click.Choice(NOTIFY_CHOICES), default="message",
                     show_default=True,
                     help="How notifications reach the device: message (a vfio-user region write each) or mmap "
                          "(the notification area is a memfd page the client maps into the guest; the device "
                          "polls it, backing off when idle). A loop setting: not stored."),
        click.Option(["--stage-timers", "stage_timers"], is_flag=True,
                     help="Time the event loop's stages (message, walk, device, publish, interrupt); shown by "
                          "`vfu-virtio status` and in the final log line."),
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
              strict: bool, faults: tuple[str, ...], fault_seed: int, poll_us: int, notify: str, stage_timers: bool,
              **given) -> None:
        from .store import StoreError
        preflight(socket)
        try:
            transport = dict(audit_path=audit_path, strict=strict, faults=tuple(map(inject.parse, faults)),
                             fault_seed=fault_seed, poll_us=poll_us, notify=notify, stage_timers=stage_timers)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--inject") from e
        try:
            device = registry.open_device(kind, state, instance, given)
        except (StoreError, RegistryError, ValueError) as e:
            raise click.ClickException(str(e)) from e
        labels = {"kind": kind.name, "instance": instance, "state": os.path.abspath(state), "rings": rings}
        _serve(obj, kind, device, socket, once, rings, labels, transport)

    return click.Command(
        kind.name, callback=click.pass_obj(serve),
        params=[*_common_options(), *map(_kind_option, kind.options), *log_options()],
        short_help=kind.summary,
        help=f"Serve one {kind.name} device (virtio id {kind.virtio_id}, PCI {kind.pci_id}, class "
             f"0x{kind.pci_class_code:06x}) on SOCKET; its settings are kept in the --state store under "
             f"--instance.\n\n{kind.summary}.\n\n{SETTINGS_RULE}")


def preflight(socket: str) -> None:
    """Everything that can refuse a serve command before the store is touched: libvfio-user loads (the pinned
    build), the vfio-user socket and its status socket can be listened on. One-line ClickException otherwise."""
    from .control import status_path
    from .libvfio_user import load_library
    from .libvfio_user._lib import LibraryNotFound
    try:
        load_library()
    except LibraryNotFound as e:
        raise click.ClickException(str(e)) from None
    try:
        unixsock.check_listen_path(socket, "vfio-user socket")
        unixsock.check_listen_path(status_path(socket), "status socket")
    except unixsock.SocketPathError as e:
        raise click.ClickException(e.strerror) from None


def _serve(obj: dict, kind: DeviceKind, device, socket: str, once: bool, rings: str, labels: dict,
           transport: dict) -> None:
    from .libvfio_user import VfuError
    from .libvfio_user._lib import LibraryNotFound
    from .server import DeviceServer
    try:
        # realized: the socket listens
        server = DeviceServer(device, socket, obj["log_level"], rings=rings, pci_class=kind.pci_class, labels=labels,
                              **transport)
    except (VfuError, LibraryNotFound, unixsock.SocketPathError, ValueError, OSError) as e:
        device.close()
        raise click.ClickException(e.strerror if isinstance(e, unixsock.SocketPathError) else str(e)) from e
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


@with_log_options
@main.command("kinds")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (the README's device-kinds table).")
def kinds_cmd(markdown: bool) -> None:
    """List the registered device kinds: name, virtio id, PCI id, class code, summary, serve options."""
    click.echo(kinds_table(main.kinds().values(), markdown))


@with_log_options
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


@with_log_options
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


def _add_commands() -> None:
    from .commands.crypto_client import crypto_client
    from .commands.rpmb_client import rpmb_client
    from .commands.status import info_cmd, status_cmd
    from .conform.cli import conform_cmd
    for command in (rpmb_client, crypto_client, status_cmd, info_cmd, conform_cmd, audit_cmd):
        main.add_command(command)


_add_commands()

if __name__ == "__main__":
    main()
