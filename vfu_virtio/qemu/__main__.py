"""``python -m vfu_virtio.qemu demo``: the main job with a real QEMU and a real Linux guest (see ``demo``)."""
from __future__ import annotations

import sys

import click

from vfu_virtio.client.spawn import ServerFailed

from .kit import KitMissing
from .scenario import MODELS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Boot a Linux guest under QEMU on vfu-virtio's devices (needs the guest kit from scripts/setup)."""


@main.command()
@click.option("--model", type=click.Choice(MODELS), default="vfu-virtio", show_default=True,
              help="vfu-virtio's crypto + RPMB over vfio-user-pci, or QEMU's own virtio-crypto-pci to compare.")
@click.option("--timeout", type=click.FloatRange(10, 3600), default=300, show_default=True,
              help="Seconds before QEMU is killed.")
@click.option("-v", "--verbose", is_flag=True, help="Echo the guest console; print the device servers' logs.")
def demo(model: str, timeout: float, verbose: bool) -> None:
    """Serve crypto + RPMB, boot the guest with both attached, print what it saw (exit 0 if as expected)."""
    from .demo import demo as run_demo
    try:
        sys.exit(run_demo(model, verbose, timeout))
    except (KitMissing, ServerFailed) as e:
        raise click.ClickException(str(e)) from e


if __name__ == "__main__":
    main()
