"""Conformance checks of a vfio-user virtio-pci device, driver side: ``vfu-virtio conform SOCKET``.

The catalogue (:mod:`.catalogue`: id, the standard's section, the requirement, MUST or SHOULD) holds the
device-normative statements of the published standard a driver can check from outside -- the PCI function and its
capabilities (:mod:`.checks_pci`), the transport registers, feature negotiation, device status and virtqueue reset
(:mod:`.checks_transport`), the split and packed virtqueues (:mod:`.checks_rings`), interrupts (:mod:`.checks_irq`) and
the crypto and RPMB device types (:mod:`.checks_types`, with their probe requests in :mod:`.devtypes`). :mod:`.runner`
runs them against any vfio-user device with the project's own driver, each on a fresh connection within a time limit
(:mod:`.target`); :mod:`.report` prints a table, JSON or JUnit XML; :mod:`.cli` is the command.

Imports only the driver side (:mod:`vfu_virtio.client`) and :mod:`vfu_virtio.abi`: it knows nothing of the device
side, so it checks vfu-virtio exactly as it checks any other device.
"""
