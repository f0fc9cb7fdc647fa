"""Side-neutral numbers and byte layouts of the virtio standard and the drafts the project implements.

Both the device side (``vfu_virtio.virtio``, ``vfu_virtio.devices``) and the driver side (``vfu_virtio.client``)
import these modules; they import nothing else of vfu_virtio.
"""
