#!/usr/bin/env python3
"""Run a command (or an array of jobs) through Slurm, with utils/run.pl's interface.

Usage:
    utils/slurm.pl [options] [JOB=1:N] <log-file> <command...>
    utils/slurm.pl --gpu 1 --mem 32G JOB=1:8 exp/log/teacher.JOB.log python -m espnet_blsp.bin.generate_teacher ...

(A Python script: the .pl name is kept because ESPnet/Kaldi recipes call utils/slurm.pl.)
Submits one ``sbatch --wait`` job (a job array for JOB=1:N) and blocks until it ends.
The batch script lives in ``<log dir>/q/``; each task writes the log named on the
command line (command, start/end time, exit code), exactly as run.pl does. Exits 1 if
any task failed or never wrote its footer, naming the logs to read.

Options (-> sbatch flags):
    --gpu G            --gres=gpu:G (nothing when 0)
    --mem M            --mem=M             (e.g. 32G)
    --num_threads N    --cpus-per-task=N   (and OMP_NUM_THREADS=N in the job)
    --time T           --time=T            (e.g. 24:00:00)
    --max_jobs_run N   --array=1-N%N       (at most N tasks at once)
    --sbatch_opts S    extra sbatch arguments, e.g. "--partition=gpu --account=proj"
Partition and account can also come from sbatch's own environment variables
(SBATCH_PARTITION, SBATCH_ACCOUNT, ...), so cmd.sh need not change per cluster.
"""

import os
import re
import shlex
import subprocess
import sys
from typing import List

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from queue_utils import UsageError, exit_code_in_log, parse, report_failures  # noqa: E402

OPTIONS = {"gpu": "0", "mem": "", "num_threads": "", "time": "", "max_jobs_run": "", "sbatch_opts": ""}
RUNNER = os.path.join(os.path.dirname(os.path.realpath(__file__)), "queue_utils.py")


def sbatch_flags(opts) -> List[str]:
    flags = []
    if int(opts["gpu"] or 0) > 0:
        flags.append(f"--gres=gpu:{int(opts['gpu'])}")
    if opts["mem"]:
        flags.append(f"--mem={opts['mem']}")
    if opts["num_threads"]:
        flags.append(f"--cpus-per-task={int(opts['num_threads'])}")
    if opts["time"]:
        flags.append(f"--time={opts['time']}")
    return flags + shlex.split(opts["sbatch_opts"])


def batch_script(req, threads: str) -> str:
    """Bash script: pick the task's log and command by SLURM_ARRAY_TASK_ID, run it logged."""
    runner = f"{shlex.quote(sys.executable)} {shlex.quote(RUNNER)} --run_logged"
    lines = ["#!/usr/bin/env bash", "# written by utils/slurm.pl", f"cd {shlex.quote(os.getcwd())}"]
    if threads:
        lines.append(f"export OMP_NUM_THREADS={int(threads)} MKL_NUM_THREADS={int(threads)}")
    if req.var is None:
        lines.append(f"exec {runner} {shlex.quote(req.log_for(None))} {shlex.quote(req.command_for(None))}")
        return "\n".join(lines) + "\n"
    lines.append('case "${SLURM_ARRAY_TASK_ID:-}" in')
    for j in req.jobs:
        lines.append(f"    {j}) exec {runner} {shlex.quote(req.log_for(j))} {shlex.quote(req.command_for(j))} ;;")
    lines += ['    *) echo "slurm.pl: unexpected SLURM_ARRAY_TASK_ID=${SLURM_ARRAY_TASK_ID:-}" >&2; exit 1 ;;', "esac"]
    return "\n".join(lines) + "\n"


def main(argv: List[str]) -> int:
    try:
        req = parse(argv, OPTIONS, "slurm.pl")
        flags = sbatch_flags(req.options)
    except (UsageError, ValueError) as e:
        sys.stderr.write(f"{e}\n{__doc__}")
        return 2
    logs = [req.log_for(j) for j in req.jobs]
    qdir = os.path.join(os.path.dirname(req.log) or ".", "q")
    os.makedirs(qdir, exist_ok=True)
    base = re.sub(r"\.log$", "", os.path.basename(req.log))
    base = re.sub(r"[._-]{2,}", ".", base.replace(req.var, "") if req.var else base).strip("._-") or "job"
    script = os.path.join(qdir, f"{base}.sh")
    with open(script, "w", encoding="utf-8") as f:
        f.write(batch_script(req, req.options["num_threads"]))
    os.chmod(script, 0o755)
    cmd = ["sbatch", "--wait", f"--job-name={base}"] + flags
    if req.var is not None:
        limit = f"%{int(req.options['max_jobs_run'])}" if req.options["max_jobs_run"] else ""
        cmd += [f"--array={req.jobs[0]}-{req.jobs[-1]}{limit}", f"--output={qdir}/{base}.%a.out"]
    else:
        cmd += [f"--output={qdir}/{base}.out"]
    cmd.append(script)
    for log in logs:  # a stale footer must not pass for this run's
        if os.path.exists(log):
            os.remove(log)
    with open(os.path.join(qdir, f"{base}.sbatch"), "w", encoding="utf-8") as f:
        f.write(shlex.join(cmd) + "\n")
    try:
        rc = subprocess.run(cmd).returncode
    except FileNotFoundError:
        sys.stderr.write("slurm.pl: sbatch not found on PATH (use utils/run.pl to run locally)\n")
        return 1
    failed = [log for log in logs if exit_code_in_log(log) != 0]
    if failed:
        report_failures("slurm.pl", failed, len(logs))
        return 1
    if rc != 0:
        sys.stderr.write(f"slurm.pl: sbatch exited with {rc} although every log reports success: {shlex.join(cmd)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
