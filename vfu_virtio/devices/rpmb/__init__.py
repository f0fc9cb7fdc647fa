"""virtio-rpmb (virtio device id 28), the published virtio standard's "RPMB Device".

``frame`` (constants, ``struct virtio_rpmb_config``/``virtio_rpmb_frame``, HMAC-SHA256 MACs), ``request``
(chain bytes -> request values), ``device`` (:class:`RpmbDevice`: config space, check order, execution on
the persistent :class:`vfu_virtio.store.RpmbState`), ``tool`` (host-side client over the project's
vfio-user driver, used by ``vfu-virtio rpmb-client``, tests and benchmarks).
"""
from .device import RpmbDevice

__all__ = ["RpmbDevice"]
