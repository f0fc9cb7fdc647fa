"""``python -m vfu_virtio`` is the ``vfu-virtio`` command."""
from .cli import main

main()
