"""egs2/blsp/utils: parse_options.sh, run.pl, slurm.pl (with a fake sbatch) and split_scp.py."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[1] / "egs2/blsp/utils"
sys.path.insert(0, str(UTILS))
import split_scp  # noqa: E402

SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
# >>> options
stage=0              # first stage to run
test_sets="a b#c"    # test sets, with a # inside the quotes
use_lm=false         # a boolean
train_args=
# <<< options
not_an_option=1
help_message="Usage: demo.sh [options] [args]"
. {utils}/parse_options.sh
echo "stage=${{stage}}|test_sets=${{test_sets}}|use_lm=${{use_lm}}|train_args=${{train_args}}|rest=$*"
"""


@pytest.fixture
def demo(tmp_path):
    path = tmp_path / "demo.sh"
    path.write_text(SCRIPT.format(utils=UTILS))
    path.chmod(0o755)
    return lambda *args: subprocess.run([str(path), *args], capture_output=True, text=True, timeout=30)


def test_parse_options_sets_variables(demo):
    out = demo("--stage", "3", "--test-sets", "x y", "--use_lm", "true", "--train_args=--max_epoch 2", "p1", "p2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "stage=3|test_sets=x y|use_lm=true|train_args=--max_epoch 2|rest=p1 p2"
    out = demo("--stage", "1", "--", "--stage", "2")
    assert out.stdout.strip().endswith("rest=--stage 2") and "stage=1|" in out.stdout


@pytest.mark.parametrize("args,message", [
    (["--no_such", "1"], "unknown option --no_such"),
    (["--not_an_option", "2"], "unknown option --not_an_option"),  # defined, but outside the block
    (["--PATH", "/tmp"], "unknown option --PATH"),
    (["--use_lm", "yes"], "--use_lm takes true or false, got 'yes'"),
    (["--stage"], "--stage needs a value"),
])
def test_parse_options_errors(demo, args, message):
    out = demo(*args)
    assert out.returncode != 0 and message in out.stderr and out.stdout == ""


def test_parse_options_help_lists_every_option(demo):
    out = demo("--stage", "5", "--help")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "Usage: demo.sh [options] [args]"
    opts = {line.split()[0]: line for line in lines if line.startswith("  --")}
    assert list(opts) == ["--stage=0", '--test_sets="a', "--use_lm=false", "--train_args="]
    assert opts["--stage=0"].endswith("# first stage to run")
    assert '--test_sets="a b#c"' in out.stdout and "# test sets, with a # inside the quotes" in out.stdout


def run_pl(*args, cwd, env=None, tool="run.pl"):
    return subprocess.run([str(UTILS / tool), *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env=env)


def test_run_pl_array_with_a_failing_job(tmp_path):
    out = run_pl("JOB=1:3", "log/x.JOB.log", "echo job JOB; test JOB -ne 2", cwd=tmp_path)
    assert out.returncode == 1
    assert "1 / 3 failed" in out.stderr and "log/x.2.log" in out.stderr and "log/x.1.log" not in out.stderr
    for j in (1, 2, 3):
        log = (tmp_path / f"log/x.{j}.log").read_text().splitlines()
        assert log[0] == f"# echo job {j}; test {j} -ne 2"
        assert log[1].startswith("# Started at") and f"job {j}" in log
        assert log[-1].startswith(f"# Ended (code {int(j == 2)})")


def test_run_pl_echoes_job_progress_on_request(tmp_path):
    env = dict(os.environ, RUNPL_PROGRESS="1", RUNPL_PROGRESS_INTERVAL="0.2")
    script = "for i in 1 2 3; do printf 'step %s/3\\r' $i; sleep 0.5; done; echo finished"
    out = run_pl("JOB=1:2", "log/p.JOB.log", script, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    for j in (1, 2):
        assert f"[p.{j}.log] step" in out.stderr  # the last carriage-return segment, while it runs
    quiet = run_pl("JOB=1:2", "log/q.JOB.log", script, cwd=tmp_path)  # not a terminal: no echo
    assert quiet.returncode == 0 and "step" not in quiet.stderr


def test_run_pl_quoting_substitution_and_pipes(tmp_path):
    out = run_pl("JOB=2:3", "log/p.JOB.log", "echo", "two words JOB", "|", "tr", "a-z", "A-Z", ">", "out.JOB",
                 cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "out.2").read_text() == "TWO WORDS 2\n" and (tmp_path / "out.3").exists()
    assert not (tmp_path / "out.1").exists()
    bad = run_pl("JOB=1:2", "log/same.log", "true", cwd=tmp_path)
    assert bad.returncode != 0 and "does not contain JOB" in bad.stderr
    bad = run_pl("--nonsense", "1", "log/a.log", "true", cwd=tmp_path)
    assert bad.returncode != 0 and "--nonsense" in bad.stderr


def test_run_pl_gives_each_job_its_own_gpus(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="4,6")
    out = run_pl("--gpu", "1", "JOB=1:4", "log/g.JOB.log", "echo dev=$CUDA_VISIBLE_DEVICES; sleep 0.2",
                 cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    devs = [next(ln for ln in (tmp_path / f"log/g.{j}.log").read_text().splitlines() if ln.startswith("dev="))
            for j in range(1, 5)]
    assert sorted(devs) == ["dev=4", "dev=4", "dev=6", "dev=6"]
    too_many = run_pl("--gpu", "3", "log/t.log", "true", cwd=tmp_path, env=env)
    assert too_many.returncode != 0 and "only 2 GPUs" in too_many.stderr


def test_run_pl_max_jobs_run(tmp_path):
    out = run_pl("--max_jobs_run", "1", "JOB=1:3", "log/m.JOB.log",
                 "date +%s.%N > start.JOB; sleep 0.2; date +%s.%N > end.JOB", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    spans = sorted((float((tmp_path / f"start.{j}").read_text()), float((tmp_path / f"end.{j}").read_text()))
                   for j in (1, 2, 3))
    assert all(nxt[0] >= cur[1] for cur, nxt in zip(spans, spans[1:]))  # one at a time: no overlap


@pytest.fixture
def fake_sbatch(tmp_path):
    """An sbatch that records its arguments and runs the script once per array task."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("""#!/usr/bin/env bash
echo "$@" >> "$FAKE_SBATCH_LOG"
array=; script=
for a in "$@"; do case $a in --array=*) array=${a#--array=};; -*) ;; *) script=$a;; esac; done
rc=0
if [ -n "$array" ]; then
    r=${array%%%*}
    for ((i=${r%-*}; i<=${r#*-}; i++)); do SLURM_ARRAY_TASK_ID=$i bash "$script" || rc=1; done
else
    bash "$script" || rc=1
fi
exit $rc
""")
    (bin_dir / "sbatch").chmod(0o755)
    record = tmp_path / "sbatch_args.txt"
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_SBATCH_LOG=str(record)), record


def test_slurm_pl_maps_options_and_reports_failures(tmp_path, fake_sbatch):
    env, record = fake_sbatch
    out = run_pl("--gpu", "2", "--mem", "8G", "--num_threads", "4", "--max_jobs_run", "2", "JOB=1:3",
                 "log/s.JOB.log", "echo task JOB threads=$OMP_NUM_THREADS; test JOB != 3",
                 cwd=tmp_path, env=env, tool="slurm.pl")
    assert out.returncode == 1 and "1 / 3 failed" in out.stderr and "log/s.3.log" in out.stderr
    args = record.read_text().split()
    for flag in ("--wait", "--gres=gpu:2", "--mem=8G", "--cpus-per-task=4", "--array=1-3%2"):
        assert flag in args, flag
    log1 = (tmp_path / "log/s.1.log").read_text()
    assert "task 1 threads=4" in log1 and "# Ended (code 0)" in log1
    record.unlink()
    out = run_pl("log/one.log", "echo", "single job", cwd=tmp_path, env=env, tool="slurm.pl")
    assert out.returncode == 0, out.stderr
    assert "--array" not in record.read_text() and "--gres" not in record.read_text()
    assert "single job" in (tmp_path / "log/one.log").read_text()


def test_split_points_balance():
    for total in range(1, 30):
        for n in range(1, total + 1):
            cuts = split_scp.split_points([1] * total, n)
            sizes = [b - a for a, b in zip(cuts[:-1], cuts[1:])]
            assert sum(sizes) == total and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    # speakers of 5, 1, 1, 1, 4 lines into 2 parts: cut after 6 lines (targets 6 of 12)
    assert split_scp.split_points([5, 1, 1, 1, 4], 2) == [0, 2, 5]


def test_split_scp_cli(tmp_path):
    lines = [f"u{i:02d} /wav/{i}.wav" for i in range(10)]
    (tmp_path / "wav.scp").write_text("\n".join(lines) + "\n")
    outs = [tmp_path / f"split/wav.{k}.scp" for k in (1, 2, 3)]
    r = subprocess.run([sys.executable, str(UTILS / "split_scp.py"), str(tmp_path / "wav.scp"), *map(str, outs)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    parts = [o.read_text().splitlines() for o in outs]
    assert [len(p) for p in parts] == [3, 4, 3] and sum(parts, []) == lines
    spk = {f"u{i:02d}": f"s{i // 4}" for i in range(10)}  # speakers of 4, 4, 2 lines
    (tmp_path / "utt2spk").write_text("".join(f"{u} {s}\n" for u, s in spk.items()))
    r = subprocess.run([str(UTILS / "split_scp.pl"), f"--utt2spk={tmp_path / 'utt2spk'}", str(tmp_path / "wav.scp"),
                        *map(str, outs[:2])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    parts = [o.read_text().splitlines() for o in outs[:2]]
    assert [len(p) for p in parts] == [4, 6]  # speaker boundaries at 4 and 8 lines: 4 is nearest to 10 / 2
    assert not {spk[ln.split()[0]] for ln in parts[0]} & {spk[ln.split()[0]] for ln in parts[1]}
    r = subprocess.run([sys.executable, str(UTILS / "split_scp.py"), "--utt2spk", str(tmp_path / "utt2spk"),
                        str(tmp_path / "wav.scp"), *map(str, [tmp_path / f"o{k}" for k in range(4)])],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "cannot split 3 speakers into 4 parts" in r.stderr


def test_split_scp_errors():
    with pytest.raises(ValueError, match="cannot split 2 lines into 3 parts"):
        split_scp.split_file(["a 1\n", "b 2\n"], 3)
    with pytest.raises(ValueError, match="speaker s1 are not contiguous"):
        split_scp.split_file(["a 1\n", "b 2\n", "c 3\n"], 2, {"a": "s1", "b": "s2", "c": "s1"})
    with pytest.raises(ValueError, match="utterance z is not in utt2spk"):
        split_scp.split_file(["z 1\n"], 1, {})
