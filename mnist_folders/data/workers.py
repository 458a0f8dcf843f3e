"""Worker processes that do not outlive their parent.

A ``ProcessPoolExecutor`` worker blocks on its task queue; when the parent is
killed with SIGKILL (no chance to shut the pool down) the workers stayed,
blocked forever, about 120 MB each. :func:`die_with_parent`,
given as the pool's ``initializer``, asks Linux to send the worker SIGKILL
when its parent dies (``prctl(PR_SET_PDEATHSIG)``, see prctl(2)); elsewhere a
daemon thread polls the parent's PID once a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Make this (worker) process end when the process that started it ends."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before the request: nothing would signal
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()
