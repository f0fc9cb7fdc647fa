"""The PCI layer: the function's config space, its capability list, MSI-X and the BAR layout.

Knows nothing of virtqueues or device types; ``layout`` is the one place the BAR/offset layout lives and
``function`` serves one function's config space, INTx and MSI-X with plain calls.
"""
