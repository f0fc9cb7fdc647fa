"""The ``vfu-virtio`` subcommands that do not serve a device (``vfu_virtio.cli`` owns the group and the serve
commands): ``rpmb-client`` and ``crypto-client`` (drive a running device from the shell through the project's
driver), ``status`` (a running device's status endpoint, as a table) and ``info`` (what a state store holds);
``conform`` lives with its checks in :mod:`vfu_virtio.conform`, ``audit`` in :mod:`vfu_virtio.cli`.
``common`` has what they share: logging options, hex and key-file values, connecting with a wait.
"""
