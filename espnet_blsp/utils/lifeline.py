"""Jobs that die with the run.sh that started them.

utils/run.pl starts every job in a session of its own (so that it can kill a job's whole
process group), which also means a SIGKILL of run.sh, or of its process group, does not
reach the jobs: they would go on appending to the files a re-run writes too. run.sh
therefore exports ``BLSP_LIFELINE=<host>:<pid>:<start time>`` (its own PID, and the start
time from ``/proc/<pid>/stat`` against PID reuse), and ``espnet_blsp/__init__.py`` calls
:func:`start` in every process that imports the package: a daemon thread that checks every ``interval`` seconds whether that process
is still alive, and when it is gone (or a zombie) kills this process's descendants (DDP
workers, DataLoader workers, ...) and then this process, with SIGKILL.

The lifeline is off when the variable is unset (a command run by hand, the tests), on
another host (slurm.pl jobs run elsewhere) and without ``/proc``.
"""

import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Dict, List, Optional

ENV = "BLSP_LIFELINE"
_started = False


def _stat_fields(pid: int) -> Optional[List[str]]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> Optional[str]:
    """The start time of ``pid`` (clock ticks after boot), or None when it is not running."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):  # a zombie is dead: only not reaped yet
        return None
    return fields[19]


def descendants(pid: int) -> List[int]:
    """Every process below ``pid`` in the process tree, children first."""
    children: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdecimal():
            fields = _stat_fields(int(name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree_and_exit(reason: str) -> None:
    """SIGKILL this process's descendants (twice: one may fork meanwhile), then itself."""
    sys.stderr.write(f"lifeline: {reason}; killing this job (pid {os.getpid()}) and its children\n")
    sys.stderr.flush()
    for _ in range(2):
        for child in descendants(os.getpid()):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    os.kill(os.getpid(), signal.SIGKILL)


def _watch(pid: int, started: str, interval: float) -> None:
    while start_time(pid) == started:
        time.sleep(interval)
    kill_tree_and_exit(f"run.sh (pid {pid}) is gone")


def parse(value: str):
    """``host:pid:start`` -> (host, pid, start), or None when malformed."""
    host, _, rest = value.rpartition(":")
    host, _, pid = host.rpartition(":")
    if not (host and pid.isdecimal() and rest.isdecimal()):
        return None
    return host, int(pid), rest


def start(interval: float = 0.5) -> bool:
    """Watch the run.sh named by ``$BLSP_LIFELINE``; True when the watch runs (once per process)."""
    global _started
    if _started:
        return True
    value = os.environ.get(ENV, "")
    if not value:
        return False
    parsed = parse(value)
    if parsed is None:
        logging.warning(f"{ENV}={value!r} is not host:pid:start_time; this job does not watch run.sh")
        return False
    host, pid, started = parsed
    if host != socket.gethostname() or not os.path.isdir("/proc"):
        return False
    threading.Thread(target=_watch, args=(pid, started, interval), name="lifeline", daemon=True).start()
    _started = True
    return True
