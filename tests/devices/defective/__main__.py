"""``python -m devices.defective DEFECT [vfu-virtio arguments]``: apply the defect, then run ``vfu-virtio``."""
import sys

from vfu_virtio.cli import main

from . import apply

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m devices.defective DEFECT [vfu-virtio arguments]")
    apply(sys.argv[1])
    main(sys.argv[2:], prog_name="vfu-virtio")
