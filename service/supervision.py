"""A worker of ``lossd serve --workers N`` stops when the supervisor that spawned it dies.

uvicorn's supervisor restarts workers that die, but nothing tells a worker that the supervisor
is gone: after a SIGKILL of the parent its workers went on serving the port, and the restarted
service failed with "address already in use". multiprocessing hands each process it spawns a
sentinel, the read end of a pipe whose write end only the parent holds, so it turns readable when
the parent exits, however it dies (prctl's PR_SET_PDEATHSIG would follow the parent's *thread*
that spawned the worker, and getppid polling would lag and trust a pid). A daemon thread waits on
it. A worker that serves then stops as on SIGTERM (uvicorn closes the listening socket, then
drains) and exits outright if that takes more than ``GRACE`` seconds, a supervisor being gone;
one still starting (importing, warming up) serves no one yet and exits at once.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.process import BaseProcess

log = logging.getLogger("lossd")

GRACE = 5.0  # seconds from the supervisor's death to a forced exit of a serving worker
EXIT_CODE = 1


def exit_with_parent(grace: float = GRACE) -> threading.Event | None:
    """In a process spawned by multiprocessing (a uvicorn worker), start the thread that stops it
    when its parent dies, and return the event to set once it serves; None, and nothing started,
    in any other process."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return None
    serving = threading.Event()
    watcher = threading.Thread(
        target=_stop_after, args=(parent, serving, grace), name="lossd-supervision", daemon=True
    )
    watcher.start()
    return serving


def _stop_after(parent: BaseProcess, serving: threading.Event, grace: float) -> None:
    parent.join()  # returns once the sentinel is readable: the parent has exited
    log.warning("supervisor (pid %s) is gone; this worker stops", parent.pid)
    if serving.is_set():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        log.warning("worker still running %g s after its supervisor's death; exiting", grace)
    for handler in logging.getLogger().handlers + log.handlers:
        handler.flush()
    os._exit(EXIT_CODE)
