#!/usr/bin/env python3
"""Run a command locally, optionally as an array of jobs (ESPnet's utils/run.pl interface).

Usage:
    utils/run.pl [--gpu N] [--mem M] [--num_threads N] [JOB=1:N] log/name.JOB.log command args...

JOB in the log path and the command is replaced by the job number. Jobs run in
parallel; each log starts with the command and ends with the exit code. Exits non-zero,
naming the logs to read, if any job fails.
"""

import datetime
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def main(argv):
    while argv and argv[0] in ("--gpu", "--mem", "--num_threads", "--max_jobs_run"):
        argv = argv[2:]  # resources are a scheduler's business; locally they are ignored
    if len(argv) < 2:
        sys.exit(__doc__)
    jobs = [None]
    m = re.fullmatch(r"(\w+)=(\d+):(\d+)", argv[0])
    if m:
        var, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
        jobs, argv = list(range(lo, hi + 1)), argv[1:]
    log_tmpl, cmd = argv[0], argv[1:]

    def run(job):
        sub = (lambda s: s.replace(var, str(job))) if job is not None else (lambda s: s)
        log = sub(log_tmpl)
        line = " ".join(shlex.quote(sub(c)) for c in cmd)
        import os

        os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
        with open(log, "w", encoding="utf-8") as f:
            f.write(f"# {line}\n# Started at {datetime.datetime.now()}\n")
            f.flush()
            rc = subprocess.call(line, shell=True, stdout=f, stderr=subprocess.STDOUT, executable="/bin/bash")
            f.write(f"# Accounting: exit code {rc}\n# Ended at {datetime.datetime.now()}\n")
        return log, rc

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(run, jobs))
    failed = [log for log, rc in results if rc != 0]
    if failed:
        sys.stderr.write(f"run.pl: {len(failed)}/{len(jobs)} failed; see {' '.join(failed)}\n")
        for log in failed[:1]:
            sys.stderr.write("".join(open(log, encoding="utf-8", errors="replace").readlines()[-20:]))
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
