#!/usr/bin/env python3
"""Run every benchmark on the CPU, each in its own process, and print one markdown table.

Usage: python benchmarks/run_cpu.py [--quick] [--threads N] [--only cif,train_step] [--log_dir DIR] [--out table.md]
       python benchmarks/run_cpu.py --table_from benchmarks/results_gpu     # the table of run_gpu.sh's outputs

Default: the CPU set, i.e. bench_cif.py / bench_whisper_encoder.py at their own (CPU) shapes,
bench_kd_memory.py --device cpu, and bench_train_step.py / bench_teacher.py / bench_decode.py
--device cpu (their small CPU shapes): about 10 minutes on 2 quiet cores.
``--quick``: every script with ``--quick`` (tiny shapes, a smoke test; about 2 minutes).
``--threads N`` is passed to the scripts that take it (the 2-core machine's figures are steadier
with 1 thread while other processes compete for the cores).

Each script's output goes to ``--log_dir`` (default: a temporary directory); the figures are read
from the JSON that the newer scripts write (``--json``) and from the printed lines of the older
ones. Exit status: 0 if every script exited 0; otherwise 1 (a script exits 1 when it misses its
target at full shapes, and the table says which).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _grab(pattern: str, text: str, default: str = "?") -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else default


# -------------------------------------------------------------------------- per-script figures
# Each reader gets (stdout, json or None) and returns table rows:
# (benchmark, reference, ours, ratio, target)
def read_cif(out: str, _js) -> List[tuple]:
    shape = _grab(r"CIF (B=\d+ T=\d+ C=\d+)", out)
    return [(f"CIF, {shape}", _grab(r"per-frame loop \(cif_reference\):\s*([\d.]+ ms)", out) + " (per-frame loop)",
             _grab(r"vectorised cif, forward:\s*([\d.]+ ms)", out) + " (vectorised, forward)",
             _grab(r"speed-up\s+([\d.]+x)", out) + " faster", ">= 50x")]


def read_kd_memory(out: str, _js) -> List[tuple]:
    shape = _grab(r"(N=\d+ rows, H=\d+, V=\d+)", out)
    return [(f"KL forward+backward memory, {shape}",
             _grab(r"naive full-vocab fp32\s*:\s*(\d+ MB)", out) + " (full vocab)",
             _grab(r"chunked kl_div\s*:\s*(\d+ MB)", out) + " (chunked)",
             _grab(r"ratio chunked/naive\s*:\s*([\d.]+)", out), "<= 0.25")]


def read_whisper(out: str, _js) -> List[tuple]:
    shape = _grab(r"Whisper encoder, (\w+) shape", out)
    return [(f"Whisper encoder, {shape} shape, 8 s clips",
             _grab(r"padded to 30 s \(3000 frames\):\s*([\d.]+ clips/s)", out) + " (padded to 30 s)",
             _grab(r"true length \(\d+ frames\):\s*([\d.]+ clips/s)", out) + " (true length)",
             _grab(r"speed-up ([\d.]+x)", out) + " faster", ">= 3x")]


def read_train_step(_out: str, js) -> List[tuple]:
    rows = []
    for name, r in js["systems"].items():
        ref = r.get("reference", {})
        rows.append((f"training step, {name} ({js['scale']} shapes, batch {r['batch']})",
                     f"{ref.get('samples_per_s', float('nan')):.2f} samples/s, "
                     f"{ref.get('peak_mb', float('nan')):.0f} MB",
                     f"{r['samples_per_s']:.2f} samples/s, MFU {100 * r['mfu']:.1f} %, {r['peak_mb']:.0f} MB",
                     f"{r.get('ratio', float('nan')):.2f}x", "GPU: >= 10x, MFU >= 50 %"))
    return rows


def read_teacher(_out: str, js) -> List[tuple]:
    return [(f"teacher generation, {js['llm']}, <= {js['max_new_tokens']} tokens",
             f"{js['reference']['tok_per_s']:.1f} tok/s (HF generate, batch {js['reference']['batch']})",
             f"{js['ours']['tok_per_s']:.1f} tok/s (batch {js['ours']['best_batch']}), agreement {js['agreement']:.2f}",
             f"{js['ratio']:.2f}x", "GPU: >= 10,000 tok/s")]


def read_decode(_out: str, js) -> List[tuple]:
    return [(f"ASR decoding RTF, {js['system']} ({js['scale']} shapes)", f"RTF {js['rtf_single']:.4f} (one at a time)",
             f"RTF {js['rtf_batched']:.4f} (batch {js['batch']}), agreement {js['agreement']:.2f}",
             f"{js['ratio']:.2f}x", "GPU: >= 5x")]


# name -> (script, default args, quick args, takes --threads, writes --json, reader)
CPU, QUICK_CPU = ["--device", "cpu"], ["--quick", "--device", "cpu"]
BENCHES: Dict[str, tuple] = {
    "cif": ("bench_cif.py", [], ["--quick"], True, False, read_cif),
    "kd_memory": ("bench_kd_memory.py", CPU, QUICK_CPU, False, False, read_kd_memory),
    "whisper_encoder": ("bench_whisper_encoder.py", [], ["--quick"], True, False, read_whisper),
    "train_step": ("bench_train_step.py", CPU, QUICK_CPU, True, True, read_train_step),
    "teacher": ("bench_teacher.py", CPU, QUICK_CPU, True, True, read_teacher),
    "decode": ("bench_decode.py", CPU, QUICK_CPU, True, True, read_decode),
}


def run_one(name: str, args, log_dir: Path) -> dict:
    script, full, quick, threads, writes_json, _ = BENCHES[name]
    cmd = [sys.executable, str(HERE / script)] + (quick if args.quick else full)
    if threads and args.threads:
        cmd += ["--threads", str(args.threads)]
    js_path = log_dir / f"{name}.json"
    if writes_json:
        cmd += ["--json", str(js_path)]
    shown = "python benchmarks/" + " ".join([script] + cmd[2:]).replace(str(log_dir) + os.sep, "")
    print(f"[run_cpu] {shown}", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=args.timeout)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or "", e.stderr or ""
        out, err = (out.decode() if isinstance(out, bytes) else out), (err.decode() if isinstance(err, bytes) else err)
    sec = time.perf_counter() - t
    (log_dir / f"{name}.txt").write_text(out + ("\n--- stderr ---\n" + err if err else ""))
    print(out, end="", flush=True)
    rows = read_rows(name, out, js_path)
    if rc != 0 and not rows:
        tail = (err or out).strip().splitlines()[-1:] or ["no output"]
        rows = [(name, "-", "-", f"failed: {tail[0][:80]}", "")]
    return dict(name=name, cmd=shown, rc=rc, sec=sec, rows=rows)


def read_rows(name: str, out: str, js_path: Path) -> List[tuple]:
    """Table rows of benchmark ``name`` from its printed output and its JSON (if it writes one)."""
    writes_json, reader = BENCHES[name][4], BENCHES[name][5]
    js = json.loads(js_path.read_text()) if writes_json and js_path.is_file() else None
    if writes_json and js is None:
        return []
    try:
        return reader(out, js)
    except (KeyError, TypeError, ValueError) as e:
        return [(name, "?", "?", f"unreadable output: {e}", "")]


def table_from(out_dir: Path) -> List[dict]:
    """Results of outputs already written as ``<name>.txt`` (+ ``<name>.json``), e.g. by run_gpu.sh;
    the exit status and time come from its ``status.txt`` lines ``<name> rc=<rc> <sec> s``."""
    status = {}
    if (out_dir / "status.txt").is_file():
        for line in (out_dir / "status.txt").read_text().splitlines():
            m = re.match(r"(\S+) rc=(\S+) (\d+) s", line)
            if m:
                status[m.group(1)] = (m.group(2), float(m.group(3)))
    results = []
    for name in BENCHES:
        txt = out_dir / f"{name}.txt"
        if txt.is_file():
            rc, sec = status.get(name, ("?", float("nan")))
            cmd = f"see {name}.txt"
            rows = read_rows(name, txt.read_text(), out_dir / f"{name}.json") or [(name, "-", "-", "no figures", "")]
            results.append(dict(name=name, cmd=cmd, rc=rc, sec=sec, rows=rows))
    return results


def table(results: List[dict]) -> str:
    lines = ["| benchmark | command | reference | ours | ratio | target | exit | wall |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for bench, ref, ours, ratio, target in r["rows"]:
            cmd = r["cmd"] if r["cmd"].startswith("see ") else f"`{r['cmd']}`"
            lines.append(f"| {bench} | {cmd} | {ref} | {ours} | {ratio} | {target} | {r['rc']} | {r['sec']:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="every script with --quick (tiny shapes)")
    p.add_argument("--threads", type=int, default=None, help="passed to the scripts that take --threads")
    p.add_argument("--only", default=None, help=f"comma-separated subset of {list(BENCHES)}")
    p.add_argument("--log_dir", default=None, help="outputs of each script (default: a temporary dir)")
    p.add_argument("--out", default=None, help="also write the markdown table here")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per script")
    p.add_argument("--table_from", default=None, help="only print the table of outputs already in this dir "
                   "(<name>.txt/.json, e.g. benchmarks/results_gpu from run_gpu.sh)")
    args = p.parse_args()
    if args.table_from:
        md = table(table_from(Path(args.table_from)))
        print(md)
        if args.out:
            Path(args.out).write_text(md + "\n")
        return
    names = args.only.split(",") if args.only else list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="espnet_blsp_bench_cpu_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results = [run_one(n, args, log_dir) for n in names]
    md = table(results)
    print(f"\nCPU benchmarks ({'--quick' if args.quick else 'CPU shapes'}; outputs in {log_dir}):\n\n{md}")
    if args.out:
        Path(args.out).write_text(md + "\n")
    sys.exit(0 if all(r["rc"] == 0 for r in results) else 1)


if __name__ == "__main__":
    main()
