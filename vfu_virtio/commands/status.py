"""``vfu-virtio status SOCKET`` (a running device, from its status socket) and ``vfu-virtio info --state DB`` (what a
state store holds, without starting a device), each as a table for a person or ``--json`` for machines.

``status`` reads the snapshot of ``vfu_virtio.server.DeviceServer.status`` through :func:`vfu_virtio.control.query`
(``SOCKET`` is the vfio-user socket path as given to ``--socket``; the status socket is found beside it) and prints
the device status bits and negotiated features, the clients' attach and detach times, every DEVICE_NEEDS_RESET with
its reason, one row per virtqueue (requests, completed, in flight, errors, bytes read and written, kicks received,
interrupts sent) and the device's own figures (crypto sessions, RPMB counter and writes); ``--watch`` refreshes it.
``info`` reads the store with :class:`vfu_virtio.store.StoreReader` (read-only, no lock, no file created): one row
per instance with its kind, whether a process serves it now, its settings and what its kind keeps (RPMB: write
counter, whether a key is programmed, blocks written; never the key).
"""
from __future__ import annotations

import json
import time

import click

from .common import connect, wait_option, with_log_options


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


QUEUE_COLUMNS = (("queue", "index"), ("format", "format"), ("size", "size"), ("requests", "requests"),
                 ("completed", "completed"), ("in flight", "in_flight"), ("errors", "errors"),
                 ("bytes read", "bytes_read"), ("bytes written", "bytes_written"), ("kicks", "kicks"),
                 ("interrupts", "interrupts"))


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    """Aligned text columns (the columns in ``right`` right-aligned), two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in [header, *rows]]


def render_status(snap: dict) -> str:
    """The status snapshot ``snap`` as text for a person (see the module docstring)."""
    labels = snap.get("labels", {})
    t = snap["transport"]
    what = snap["device"] + (f" instance {labels['instance']!r}" if "instance" in labels else "")
    where = f" (state {labels['state']})" if "state" in labels else ""
    lines = [f"{what}{where} on {snap['socket']}: pid {snap['pid']}, vfu-virtio {snap['version']}, up "
             f"{_duration(snap['uptime_s'])}"]
    clients = snap["clients"]
    recent = clients["recent"]
    if clients["attached"]:
        now = recent[-1]
        client = f"client {now['client']} attached since {_when(now['attached'])}"
    else:
        client = "no client attached" + (f" (last gone {_when(recent[-1]['detached'])})" if recent else "")
    lines.append(f"{client}; {clients['served']} served")
    lines.append(f"device_status: {t['device_status']:#04x} {' '.join(t['device_status_names']) or '(reset)'}")
    lines.append(f"negotiated features: {t['driver_features']:#018x} {' '.join(t['features_names']) or '-'}")
    lines.append(f"DEVICE_NEEDS_RESET: {t['needs_reset']}; configuration interrupts: {t['config_interrupts']}")
    for event in t["needs_reset_events"]:
        lines.append(f"  {_when(event['time'])}  {event['reason']}")
    if t["driver_notes"]:
        lines.append("driver requirements broken, accepted: " + ", ".join(f"{k} x{v}"
                                                                         for k, v in t["driver_notes"].items()))
    if t["counters"]:
        lines.append("counters: " + ", ".join(f"{k} {v}" for k, v in t["counters"].items()))
    rows = [[("-" if q[key] is None else f"{q[key]:,}" if isinstance(q[key], int) else str(q[key]))
             for _name, key in QUEUE_COLUMNS] for q in t["queues"]]
    lines += table([name for name, _key in QUEUE_COLUMNS], rows, right=set(range(len(QUEUE_COLUMNS))) - {1})
    stats = snap.get("device_stats") or {}
    if stats:
        lines.append(f"{snap['device']}: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    return "\n".join(lines)


@with_log_options
@click.command("status")
@click.argument("socket", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as one JSON object instead of a table.")
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until interrupted (Ctrl-C).")
@click.option("--interval", type=click.FloatRange(0.1), default=2.0, show_default=True, metavar="SECONDS",
              help="Seconds between refreshes with --watch.")
@click.option("--count", type=click.IntRange(1), metavar="N", help="With --watch: stop after N refreshes.")
@wait_option()
def status_cmd(socket: str, as_json: bool, watch: bool, interval: float, count: int | None, wait: float) -> None:
    """Print the status and counters of the device serving SOCKET (its vfio-user socket path, as given to
    --socket; the status socket SOCKET.status beside it answers).

    Shows device_status, the negotiated features, clients, DEVICE_NEEDS_RESET events with their reasons, per
    virtqueue requests / completed / in flight / errors / bytes read and written / kicks received / interrupts sent,
    and the device's own figures (crypto sessions, RPMB write counter and writes).
    """
    from ..control import StatusClient, StatusUnavailable

    def opener() -> StatusClient:
        try:
            return StatusClient(socket)
        except StatusUnavailable as e:
            if isinstance(e.__cause__, (FileNotFoundError, ConnectionRefusedError, BlockingIOError)):
                raise e.__cause__ from None  # connect() waits for those
            raise click.ClickException(str(e)) from None

    client = connect(opener, f"{socket} (status socket {socket}.status)", wait)
    shown = 0
    try:
        with client:
            while True:
                try:
                    snap = client.get()
                except StatusUnavailable as e:
                    raise click.ClickException(str(e)) from None
                text = json.dumps(snap) if as_json else render_status(snap)
                if watch and not as_json and shown:
                    click.clear()
                click.echo(text)
                shown += 1
                if not watch or (count is not None and shown >= count):
                    return
                time.sleep(interval)
    except KeyboardInterrupt:
        return


@with_log_options
@click.command("info")
@click.option("--state", "state", required=True, type=click.Path(dir_okay=False),
              help="The SQLite state store (as given to --state when serving).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def info_cmd(state: str, as_json: bool) -> None:
    """Print what a state store holds per device instance -- kind, whether a process serves it now, its settings,
    what its kind keeps (RPMB: write counter, whether a key is programmed, blocks written; never the key) --
    without starting a device or changing the file."""
    from ..devices import registry
    from ..store import StoreError, StoreReader
    try:
        kinds = registry.kinds()
    except registry.RegistryError:
        kinds = registry.load(registry.BUILTIN)
    try:
        with StoreReader(state) as reader:
            instances = []
            for r in reader.instances():
                kind = kinds.get(r.kind)
                kept = kind.inspect(reader.db, r.id) if kind is not None and kind.inspect is not None else {}
                instances.append({"kind": r.kind, "instance": r.instance, "served": r.served,
                                  "settings": r.settings, "state": kept})
            path = reader.path
    except StoreError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps({"store": path, "instances": instances}))
        return
    click.echo(f"state store {path}: {len(instances)} instance(s)")
    if not instances:
        return
    rows = [[i["kind"], i["instance"], {True: "yes", False: "no", None: "?"}[i["served"]],
             " ".join(f"{k}={v}" for k, v in i["settings"].items()) or "-",
             " ".join(f"{k}={v}" for k, v in i["state"].items()) or "-"] for i in instances]
    for line in table(["kind", "instance", "served now", "settings", "kept state"], rows):
        click.echo(line)
