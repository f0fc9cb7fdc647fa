"""Test-only device kinds, loaded by the servers the tests start (``VFU_VIRTIO_DEVICES``, see conftest)."""
