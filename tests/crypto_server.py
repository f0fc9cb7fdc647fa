"""Test launcher: ``vfu-virtio crypto`` plus ``--profile`` and ``--bulk-threshold``, until the CLI carries them.

    python -m crypto_server [--log-level L] crypto --socket S --state DB [--instance I] [--queues N]
        [--max-sessions N] [--max-size BYTES] [--profile NAME] [--bulk-threshold BYTES] [--once]

The same arguments, logging, one-line errors (exit 1) and server as the command line; the device comes from
:func:`vfu_virtio.devices.crypto.factory.make_crypto` (options left out take the stored value, else the default).
The fixture ``serve`` runs it with ``program=("-m", "crypto_server")`` and ``tests/`` on PYTHONPATH.
"""
from __future__ import annotations

import argparse
import logging
import sys

from vfu_virtio.devices.crypto.factory import make_crypto
from vfu_virtio.libvfio_user import VfuError
from vfu_virtio.server import DeviceServer
from vfu_virtio.store import StoreError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="crypto_server", description=__doc__.splitlines()[0])
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    ap.add_argument("kind", choices=["crypto"])
    ap.add_argument("--socket", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--instance", default="0")
    ap.add_argument("--queues", dest="max_dataqueues", type=int)
    ap.add_argument("--max-sessions", type=int)
    ap.add_argument("--max-size", type=int)
    ap.add_argument("--profile")
    ap.add_argument("--bulk-threshold", type=int)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args(argv)
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        device = make_crypto(args.state, args.instance, max_dataqueues=args.max_dataqueues,
                             max_sessions=args.max_sessions, max_size=args.max_size, profile=args.profile,
                             bulk_threshold=args.bulk_threshold)
    except (StoreError, ValueError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    try:
        server = DeviceServer(device, args.socket, level)
    except (VfuError, ValueError) as e:
        device.close()
        print(f"Error: {e}", file=sys.stderr)
        return 1
    server.serve_forever(max_clients=1 if args.once else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
