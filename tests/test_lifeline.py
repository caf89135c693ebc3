"""A job with a lifeline dies, with its children, soon after the run.sh it names is gone."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from espnet_blsp.utils import lifeline

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")

# a job: starts its lifeline, a child that would outlive it, then waits
JOB = """
import subprocess, sys, time
from espnet_blsp.utils import lifeline
assert lifeline.start(interval=0.1)
child = subprocess.Popen(["sleep", "60"])
print(child.pid, flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    return lifeline.start_time(pid) is not None


def _job(env_value: str, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, lifeline.ENV: env_value,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # a session of its own, as utils/run.pl starts jobs: a kill of the parent's group misses it
    return subprocess.Popen([sys.executable, "-c", JOB], env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=tmp_path)


def test_job_and_its_children_die_with_the_watched_process(tmp_path):
    parent = subprocess.Popen(["sleep", "60"])  # stands in for run.sh
    job = _job(f"{socket.gethostname()}:{parent.pid}:{lifeline.start_time(parent.pid)}", tmp_path)
    try:
        grandchild = int(job.stdout.readline())
        time.sleep(0.5)
        assert job.poll() is None and _alive(grandchild)  # alive while the parent is
        parent.kill()
        parent.wait()
        t0 = time.time()
        while (job.poll() is None or _alive(grandchild)) and time.time() - t0 < 5:
            time.sleep(0.05)
        assert job.poll() == -signal.SIGKILL and not _alive(grandchild)
        assert time.time() - t0 < 2
    finally:
        for p in (parent, job):
            if p.poll() is None:
                p.kill()


def test_a_reused_pid_is_not_the_watched_process(tmp_path):
    """The same PID with another start time (PID reuse) counts as gone."""
    parent = subprocess.Popen(["sleep", "60"])
    job = _job(f"{socket.gethostname()}:{parent.pid}:1", tmp_path)
    try:
        job.stdout.readline()
        assert job.wait(5) == -signal.SIGKILL
    finally:
        parent.kill()
        parent.wait()


def test_lifeline_is_off_without_the_variable_or_on_another_host(monkeypatch):
    monkeypatch.delenv(lifeline.ENV, raising=False)
    assert not lifeline.start()
    monkeypatch.setenv(lifeline.ENV, f"not-{socket.gethostname()}:1:1")  # a slurm.pl job elsewhere
    assert not lifeline.start()
    monkeypatch.setenv(lifeline.ENV, "garbage")
    assert not lifeline.start()
    assert lifeline.parse("node-1.example:4242:123456") == ("node-1.example", 4242, "123456")
