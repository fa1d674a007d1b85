"""A gateway started as root becomes its service user before it serves anything.

    drop_root("bcpm-gateway", state_folder)   # nothing to do unless the process is root

The systemd unit starts the gateway as its user already; this is for the installer who runs
``bcpm-gateway run`` as root by hand or from another init system. The process takes the user's
id, primary group and supplementary groups (dialout: the serial port) and keeps one capability,
CAP_NET_BIND_SERVICE, so the faces still bind ports below 1024 (SNMP 161, HTTPS 443, Modbus TCP
502), also when a restart binds them again. Python has no call for capabilities: prctl and capset
are called from the C library (ctypes), as the unit's ``AmbientCapabilities`` would have it.
"""

from __future__ import annotations

import ctypes
import os
import pwd
from pathlib import Path

from gateway.errors import GatewayError

__all__ = ["CAP_NET_BIND_SERVICE", "NoSuchUser", "drop_root"]

CAP_NET_BIND_SERVICE = 10
_PR_SET_KEEPCAPS = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class NoSuchUser(GatewayError):
    pass


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def drop_root(user: str, state_folder: Path) -> bool:
    """Become `user`, keeping only CAP_NET_BIND_SERVICE; False when not root (nothing done).

    The state folder is made for the user if it is missing; one the user cannot write to is an
    error, and a user that does not exist is NoSuchUser (`bcpm-gateway install-service` makes it).
    """
    if os.geteuid() != 0:
        return False
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise NoSuchUser(
            f"started as root, and there is no user {user!r} to serve as: create it with "
            "`bcpm-gateway install-service`, or name another with --user"
        ) from None
    if not state_folder.exists():
        state_folder.mkdir(parents=True, mode=0o750)
        os.chown(state_folder, account.pw_uid, account.pw_gid)
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups(os.getgrouplist(user, account.pw_gid))
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    _check(libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    keep = 1 << CAP_NET_BIND_SERVICE
    data = (_Data * 2)(_Data(keep, keep, 0), _Data(0, 0, 0))
    _check(libc.capset(ctypes.byref(_Header(_LINUX_CAPABILITY_VERSION_3, 0)), data), "capset")
    if not os.access(state_folder, os.W_OK | os.X_OK):
        raise GatewayError(f"user {user} cannot write to the state folder {state_folder}: chown {user} {state_folder}")
    return True


def _check(result: int, call: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise GatewayError(f"cannot drop root: {call} failed: {os.strerror(error)}")
