"""The ``vfu-virtio`` command line (click): serve a device, print the QEMU command line, run the demo.

Every option names its unit and limit; bad values are refused with a message naming the value and the
limit. Logs go to stderr with levels (``--log-level``).
"""
from __future__ import annotations

import json
import logging
import sys

import click

from .devices import DEVICE_KINDS

log = logging.getLogger("vfu_virtio")

LOG_LEVELS = ["debug", "info", "warning", "error"]


def _setup_logging(level: str) -> int:
    lvl = getattr(logging, level.upper())
    logging.basicConfig(level=lvl, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    return lvl


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="Least severe log level written to stderr (libvfio-user's own lines included).")
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """vfu-virtio: a virtio-pci function (virtio-crypto, virtio-rpmb) served over vfio-user.

    Attach it to QEMU with `-device vfio-user-pci` (see `vfu-virtio qemu-cmdline`) or drive it with the
    project's own vfio-user driver (`vfu_virtio.client`).
    """
    ctx.obj = {"log_level": _setup_logging(log_level)}


def _serve(ctx: click.Context, device, socket: str, once: bool) -> None:
    from .libvfio_user import VfuError
    from .libvfio_user._lib import LibraryNotFound
    from .server import DeviceServer
    try:
        server = DeviceServer(device, socket, ctx.obj["log_level"])
    except (VfuError, LibraryNotFound, ValueError) as e:
        device.close()
        raise click.ClickException(str(e)) from e
    server.serve_forever(max_clients=1 if once else None)


_SOCKET = click.option("--socket", "socket", required=True, type=click.Path(dir_okay=False),
                       help="vfio-user UNIX socket path to listen on (a stale socket file is replaced).")
_STATE = click.option("--state", "state", required=True, type=click.Path(dir_okay=False),
                      help="SQLite state store shared by all devices (created with mode 0600).")
_INSTANCE = click.option("--instance", default="0", show_default=True,
                         help="Device instance name inside the store (several devices can share one file).")
_ONCE = click.option("--once", is_flag=True, help="Exit after the first client disconnects.")


@main.command()
@_SOCKET
@_STATE
@_INSTANCE
@click.option("--queues", "max_dataqueues", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Number of data queues (max_dataqueues), 1..64; the controlq comes after them.")
@click.option("--max-sessions", type=click.IntRange(1, 1 << 20), default=1024, show_default=True,
              help="Cap on live sessions; create-session answers an error when it is reached.")
@click.option("--max-size", type=click.IntRange(1, 1 << 30), default=1 << 20, show_default=True,
              help="max_size: largest request payload in bytes the device accepts.")
@_ONCE
@click.pass_context
def crypto(ctx, socket, state, instance, max_dataqueues, max_sessions, max_size, once):
    """Serve a virtio-crypto device (virtio id 20, PCI 1af4:1054) on SOCKET."""
    device = DEVICE_KINDS["crypto"](state=state, instance=instance, max_dataqueues=max_dataqueues,
                                    max_sessions=max_sessions, max_size=max_size)
    _serve(ctx, device, socket, once)


@main.command("qemu-cmdline")
@click.option("--socket", "sockets", multiple=True, required=True,
              help="Device socket to attach (repeat for several devices).")
@click.option("--memory", default="512M", show_default=True, help="Guest RAM size (shared memfd backend).")
def qemu_cmdline(sockets, memory):
    """Print the QEMU arguments that attach the given vfio-user sockets (shared guest RAM required)."""
    args = ["-object", f"memory-backend-memfd,id=mem,size={memory},share=on",
            "-machine", "q35,memory-backend=mem", "-m", memory]
    for s in sockets:
        args += ["-device", json.dumps({"driver": "vfio-user-pci", "socket": {"path": s, "type": "unix"}})]
    click.echo(" ".join(a if a.startswith("-") else "'" + a + "'" for a in args))


if __name__ == "__main__":
    main()
