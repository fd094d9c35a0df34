"""Processes that cannot outlive the launcher, and ports checked before anything starts.

`make run` starts the emulator's JVM, four functions and the scheduler loop. A cleanup in a
`finally` runs on SIGINT, SIGTERM and SIGHUP, but never on SIGKILL (or an OOM kill): whatever
the launcher started would keep its port and break the next `make run` (issue 12). So every
child asks the kernel, between fork and exec, to be sent `signal` when its parent dies
(`prctl(PR_SET_PDEATHSIG)`, Linux): the kernel does the cleanup that no handler can.

The death signal belongs to the process that set it and is cleared in its own children, so it
must be set on the process that holds the resources: the JVM itself, not a shell script that
forks it (devtools/emulator.py starts the JVM directly for that reason).
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` making the child receive `signum` when this process dies (Linux only;
    elsewhere None: no death signal, the launcher's own cleanup is all there is).

    SIGTERM, not SIGKILL: the JVM and gunicorn then stop their own children and free their
    ports in an orderly way. The death signal follows the *thread* that forked, so call Popen
    from the main thread."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def set_death_signal() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            # Without it the child could outlive us: refuse to start it at all.
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl: then nothing would ever signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)

    return set_death_signal


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on `host:port` (or the port cannot be bound at all).

    SO_REUSEADDR, as servers set it: a connection closed a moment ago (TIME_WAIT) does not
    count as taken, a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False
