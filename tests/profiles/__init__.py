"""Test-only crypto profiles, loaded as plug-ins (``VFU_VIRTIO_CRYPTO_PROFILES=profiles.<module>``, ``tests/`` on
the path)."""
