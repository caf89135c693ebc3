#!/usr/bin/env python3
"""Run a command (or an array of jobs) on this machine, each job logged to its own file.

Usage:
    utils/run.pl [options] [JOB=1:N] <log-file> <command...>
    utils/run.pl JOB=1:4 exp/log/dump.JOB.log python -m espnet_blsp.bin.dump_feats --nj 4 --job JOB

(A Python script: the .pl name is kept because ESPnet/Kaldi recipes call utils/run.pl.)
JOB in the log path and in the command becomes the job number. Each log holds the
command, the start and end times and the exit code. Exits 1 if any job failed,
naming the logs to read.

Options:
    --max_jobs_run N   at most N jobs at a time (default: all of them)
    --gpu G            give each job G GPUs of its own: CUDA_VISIBLE_DEVICES is set per job
                       from the visible devices (CUDA_VISIBLE_DEVICES, else ``nvidia-smi -L``),
                       and a job waits until G are free. With no GPU found it is left unset.
    --num_threads N    export OMP_NUM_THREADS=N and MKL_NUM_THREADS=N to each job
    --mem M, --time T  accepted for slurm.pl compatibility; not enforced locally

On a terminal (or with RUNPL_PROGRESS=1), the last progress line of each running job's log
(a tqdm bar, ESPnet's trainer report) is echoed every RUNPL_PROGRESS_INTERVAL seconds (15)
when it changed, so long stages show their progress; the logs keep everything.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from queue_utils import UsageError, parse, report_failures, run_logged  # noqa: E402

OPTIONS = {"max_jobs_run": "0", "gpu": "0", "num_threads": "", "mem": "", "time": ""}


def visible_gpus() -> List[str]:
    """Device ids jobs may use: CUDA_VISIBLE_DEVICES if set, else those nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        if out.returncode == 0:
            return re.findall(r"^GPU (\d+):", out.stdout, flags=re.M)
    return []


class GpuPool:
    """Hands out disjoint sets of device ids; ``take`` blocks until enough are free."""

    def __init__(self, devices: List[str]):
        self.free = list(devices)
        self.cond = threading.Condition()

    def take(self, n: int) -> List[str]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.free) >= n)
            got, self.free = self.free[:n], self.free[n:]
            return got

    def give(self, devices: List[str]) -> None:
        with self.cond:
            self.free += devices
            self.cond.notify_all()


def last_progress(log: str, width: int = 160) -> str:
    """The last non-empty line or carriage-return segment of ``log`` (a tqdm bar's state)."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.path.getsize(log) - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in re.split(r"[\r\n]", tail) if p.strip()]
    return parts[-1][:width] if parts else ""


def report_progress(logs: List[str], done: threading.Event, interval: float) -> None:
    shown = {}
    while not done.wait(interval):
        for log in logs:
            line = last_progress(log)
            if line and shown.get(log) != line:
                shown[log] = line
                sys.stderr.write(f"  [{os.path.basename(log)}] {line}\n")
        sys.stderr.flush()


def main(argv: List[str]) -> int:
    try:
        req = parse(argv, OPTIONS, "run.pl")
        max_jobs = int(req.options["max_jobs_run"] or 0) or len(req.jobs)
        ngpu = int(req.options["gpu"] or 0)
    except (UsageError, ValueError) as e:
        sys.stderr.write(f"{e}\n{__doc__}")
        return 2
    pool: Optional[GpuPool] = None
    if ngpu > 0:
        devices = visible_gpus()
        if devices and ngpu > len(devices):
            sys.stderr.write(f"run.pl: --gpu {ngpu} but only {len(devices)} GPUs are visible ({','.join(devices)})\n")
            return 2
        pool = GpuPool(devices) if devices else None
    processes: set = set()

    def run(job: Optional[int]) -> int:
        env = dict(os.environ)
        if req.options["num_threads"]:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = req.options["num_threads"]
        devices = pool.take(ngpu) if pool else []
        note = f" ({req.var}={job})" if job is not None else ""
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
            note += f" CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}"
        try:
            return run_logged(req.command_for(job), req.log_for(job), env, note, processes)
        finally:
            if pool:
                pool.give(devices)

    def stop(signum, frame):  # kill the jobs' process groups, not just the shells
        for p in list(processes):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        sys.stderr.write(f"run.pl: interrupted (signal {signum}); jobs killed\n")
        os._exit(128 + signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    done = threading.Event()
    if sys.stderr.isatty() or os.environ.get("RUNPL_PROGRESS") == "1":
        interval = float(os.environ.get("RUNPL_PROGRESS_INTERVAL", "15"))
        logs = [req.log_for(j) for j in req.jobs]
        threading.Thread(target=report_progress, args=(logs, done, interval), daemon=True).start()
    try:
        with ThreadPoolExecutor(max_workers=max_jobs) as ex:
            codes = list(ex.map(run, req.jobs))
    finally:
        done.set()
    failed = [req.log_for(j) for j, rc in zip(req.jobs, codes) if rc != 0]
    if failed:
        report_failures("run.pl", failed, len(req.jobs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
