"""``python -m vfu_virtio.qemu demo``: the main job with a real QEMU and a real Linux guest (see ``demo``);
``python -m vfu_virtio.qemu compare``: every guest scenario against vfu-virtio and QEMU's own device, side by side
(see ``compare``)."""
from __future__ import annotations

import sys

import click

from vfu_virtio.client.spawn import ServerFailed

from . import compare as side_by_side
from .kit import GuestKit, KitMissing
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


@main.command()
@click.option("--scenario", "scenarios", type=click.Choice(list(side_by_side.SCENARIOS)), multiple=True,
              help="Scenario to run (repeatable; default: all).")
@click.option("--kernel", "kernels", multiple=True,
              help="Guest kernel of the kit by label, e.g. linux-6.1 (repeatable; default: every kernel of the kit).")
@click.option("-v", "--verbose", is_flag=True, help="Echo the guest consoles.")
def compare(scenarios: tuple[str, ...], kernels: tuple[str, ...], verbose: bool) -> None:
    """Boot every scenario on vfu-virtio and on QEMU's own device and print the checks side by side: one table per
    scenario and kernel (exit 0 if every outcome is the expected one)."""
    try:
        kit = GuestKit.from_env()
        results = {}
        for kernel in kernels or [k.label for k in kit.kernels]:
            for scenario in scenarios or side_by_side.SCENARIOS:
                for cfg in side_by_side.SCENARIOS[scenario]:
                    click.echo(f"booting {scenario} on {cfg.name}, {kernel} ...", err=True)
                    results[(scenario, cfg.name, kernel)] = side_by_side.boot(
                        kit.with_kernel(kernel), scenario, cfg.name,
                        on_line=(lambda line: click.echo(f"  | {line}", err=True)) if verbose else None)
    except (KitMissing, ServerFailed) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"{kit.qemu_version()}; accelerator {kit.accel}; DPDK {kit.dpdk_version}")
    for k in kit.kernels:
        click.echo(f"guest kernel {k.label}: {k.describe()}")
    click.echo("\n" + side_by_side.tables(results) + "\n")
    bad = side_by_side.mismatches(results)
    for line in bad:
        click.echo(f"UNEXPECTED: {line}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
