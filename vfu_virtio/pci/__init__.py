"""The PCI layer: the function's config space, its capability list and the BAR layout.

Knows nothing of virtqueues or device types; ``layout`` is the one place the BAR/offset layout lives.
"""
