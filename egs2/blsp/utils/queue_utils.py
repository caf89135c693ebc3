#!/usr/bin/env python3
"""Shared parts of utils/run.pl and utils/slurm.pl: arguments, JOB substitution, logging.

Both take the interface ESPnet/Kaldi recipes use:

    <tool> [options] [JOB=1:N] <log-file> <command...>

- ``JOB=1:N`` (any upper-case name, or ``JOB=3`` for one job) makes an array of N jobs;
  the name is replaced by the job number in the log path and in the command.
- A command given as one argument is a shell line, run by bash as it is (pipes and
  redirections work). A command given as several arguments is joined with spaces;
  arguments holding blanks, quotes or backslashes (or empty ones) are quoted, the
  others pass as they are, so ``\\|`` and ``">"`` tokens still act as shell operators.
- Every log starts with the command line and the start time and ends with
  ``# Ended (code N) at ...``; the tools exit non-zero if any job failed, naming its log.

``python3 queue_utils.py --run_logged LOG CMDLINE`` runs one logged job (used by the
batch scripts that slurm.pl submits).
"""

import datetime
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

_JOB_RE = re.compile(r"^([A-Z][A-Z0-9_]*)=(\d+)(?::(\d+))?$")
_PLAIN_ARG = re.compile(r"^[^\s'\"\\]+$")


class UsageError(Exception):
    """Bad command line for run.pl / slurm.pl."""


@dataclass
class Request:
    """A parsed ``<tool> [options] [JOB=a:b] log command...`` line."""

    options: Dict[str, str]
    var: Optional[str]
    jobs: List[Optional[int]]  # [None] when there is no JOB= range
    log: str
    command: List[str] = field(default_factory=list)

    def log_for(self, job: Optional[int]) -> str:
        return substitute(self.log, self.var, job)

    def command_for(self, job: Optional[int]) -> str:
        return command_line([substitute(a, self.var, job) for a in self.command])


def parse(argv: Sequence[str], known_options: Dict[str, str], prog: str) -> Request:
    """Options (``--name value`` or ``--name=value``, from ``known_options`` with defaults),
    then an optional ``VAR=a:b``, then the log file and the command."""
    argv = list(argv)
    options = dict(known_options)
    var, jobs = None, [None]
    while argv:
        a = argv[0]
        m = _JOB_RE.match(a)
        if a.startswith("--"):
            name, sep, value = a[2:].partition("=")
            name = name.replace("-", "_")
            if name not in known_options:
                raise UsageError(f"{prog}: unknown option --{name} (known: "
                                 + " ".join(f"--{k}" for k in known_options) + ")")
            if not sep:
                if len(argv) < 2:
                    raise UsageError(f"{prog}: option --{name} needs a value")
                value = argv[1]
                argv = argv[1:]
            options[name] = value
            argv = argv[1:]
        elif m and var is None:
            var = m.group(1)
            lo = int(m.group(2))
            hi = int(m.group(3)) if m.group(3) is not None else lo
            if hi < lo:
                raise UsageError(f"{prog}: empty job range {a}")
            jobs = list(range(lo, hi + 1))
            argv = argv[1:]
        else:
            break
    if len(argv) < 2:
        raise UsageError(f"{prog}: expected [options] [JOB=1:N] <log-file> <command...>, got {' '.join(argv)!r}")
    log, command = argv[0], argv[1:]
    if var is not None and len(jobs) > 1 and var not in log:
        raise UsageError(f"{prog}: {len(jobs)} jobs ({var}=...) but the log file {log} does not contain {var}")
    return Request(options, var, jobs, log, command)


def substitute(text: str, var: Optional[str], job: Optional[int]) -> str:
    return text if var is None else text.replace(var, str(job))


def command_line(args: Sequence[str]) -> str:
    """The shell line for a command (rules in the module docstring)."""
    if len(args) == 1:
        return args[0]
    return " ".join(a if _PLAIN_ARG.match(a) else shlex.quote(a) for a in args)


def now() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def run_logged(cmd: str, log: str, env: Optional[Dict[str, str]] = None, note: str = "",
               processes: Optional[set] = None) -> int:
    """Run ``cmd`` with bash, stdout and stderr into ``log`` between a header and a footer."""
    os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
    start = time.time()
    with open(log, "w", encoding="utf-8") as f:
        f.write(f"# {cmd}\n# Started at {now()} on {socket.gethostname()}{note}\n")
        f.flush()
        proc = subprocess.Popen(["bash", "-c", cmd], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        if processes is not None:
            processes.add(proc)
        try:
            rc = proc.wait()
        finally:
            if processes is not None:
                processes.discard(proc)
        f.write(f"# Accounting: time={time.time() - start:.0f} seconds\n"
                f"# Ended (code {rc}) at {now()}, elapsed time {time.time() - start:.0f} seconds\n")
    return rc


_ENDED = re.compile(r"^# Ended \(code (-?\d+)\)", re.M)


def exit_code_in_log(log: str) -> Optional[int]:
    """The code in a log's ``# Ended (code N)`` footer, or None (job never finished)."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            codes = _ENDED.findall(f.read())
    except OSError:
        return None
    return int(codes[-1]) if codes else None


def report_failures(prog: str, failed: Sequence[str], total: int) -> None:
    """Name the failed logs on stderr and show the end of the first one."""
    sys.stderr.write(f"{prog}: {len(failed)} / {total} failed; see {' '.join(failed[:10])}"
                     + (" ..." if len(failed) > 10 else "") + "\n")
    try:
        with open(failed[0], encoding="utf-8", errors="replace") as f:
            tail = f.readlines()[-20:]
        sys.stderr.write(f"--- last lines of {failed[0]} ---\n" + "".join(tail))
    except OSError:
        sys.stderr.write(f"{prog}: {failed[0]} was not written (the job never started?)\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--run_logged":
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        sys.exit(run_logged(sys.argv[3], sys.argv[2], note=f" (slurm task {task})" if task else ""))
    sys.exit(__doc__)
