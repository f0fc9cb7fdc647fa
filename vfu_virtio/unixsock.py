"""UNIX socket paths a server listens on: the length limit, who owns a path, and taking over a stale one.

A ``sockaddr_un`` holds at most :data:`MAX_PATH_BYTES` bytes of path (108 with the terminating NUL, Linux
``unix(7)``). A path that exists and accepts a connection belongs to a running server: nobody else may remove it. A
socket file whose connect is refused (ECONNREFUSED: its server is gone, e.g. killed) is stale and may be replaced.
:func:`check_listen_path` says all that in one line naming the path, before anything is created; :func:`remove_stale`
removes a stale socket file right before the caller binds.

Used for the vfio-user socket (``vfu_virtio.libvfio_user``) and the status endpoint beside it (``vfu_virtio.control``).
Imports nothing of vfu_virtio.
"""
from __future__ import annotations

import errno
import os
import socket
import stat

#: Longest UNIX socket path in bytes (``sun_path`` is 108 bytes including the terminating NUL).
MAX_PATH_BYTES = 107
#: Seconds a probe connect may take (a live server's listen backlog answers at once).
PROBE_TIMEOUT_S = 1.0


class SocketPathError(OSError):
    """A socket path that cannot be listened on; the message (one line) names the path and why."""


def probe(path: str) -> str:
    """What is at ``path``: ``"absent"``, ``"live"`` (a UNIX socket that accepts a connection, or whose listen backlog
    is full), ``"stale"`` (a socket file whose connect is refused), ``"denied"`` (a socket this process may not
    connect to) or ``"other"`` (not a socket). The probe connection is closed at once."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISSOCK(st.st_mode):
        return "other"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(PROBE_TIMEOUT_S)
    try:
        s.connect(path)
    except ConnectionRefusedError:
        return "stale"
    except FileNotFoundError:
        return "absent"  # removed meanwhile
    except PermissionError:
        return "denied"
    except OSError:
        return "live"  # EAGAIN / a timeout: the listen backlog of a busy server is full
    finally:
        s.close()
    return "live"


def check_listen_path(path: str, what: str = "socket") -> None:
    """Raise :class:`SocketPathError` (one line naming ``what`` and ``path``) unless a server may listen on ``path``:
    at most :data:`MAX_PATH_BYTES` bytes, its directory exists and is writable, and nothing but a stale socket is
    there. Changes nothing."""
    size = len(os.fsencode(path))
    if size > MAX_PATH_BYTES:
        raise SocketPathError(errno.ENAMETOOLONG, f"{what} {path}: {size} bytes; a UNIX socket path holds at most "
                                                  f"{MAX_PATH_BYTES} bytes (choose a shorter path)")
    if not path:
        raise SocketPathError(errno.EINVAL, f"{what}: empty path")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise SocketPathError(errno.ENOENT, f"{what} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SocketPathError(errno.EACCES, f"{what} {path}: directory {parent} is not writable")
    found = probe(path)
    if found == "other":
        raise SocketPathError(errno.EEXIST, f"{what} {path} exists and is not a socket; refusing to remove it")
    if found == "denied":
        raise SocketPathError(errno.EACCES, f"{what} {path} is a socket this user may not connect to; refusing to "
                                            "remove it")
    if found == "live":
        raise SocketPathError(errno.EADDRINUSE, f"{what} {path} is in use: another process is serving it (it "
                                                f"accepted a connection); stop that one or choose another path")


def remove_stale(path: str, what: str = "socket") -> bool:
    """Remove ``path`` if it is a stale socket (see :func:`probe`); True if it was removed. Raises
    :class:`SocketPathError` if it is live or not a socket; an absent path is fine."""
    found = probe(path)
    if found == "absent":
        return False
    if found != "stale":
        check_listen_path(path, what)  # raises with the reason
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
