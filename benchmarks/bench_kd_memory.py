#!/usr/bin/env python3
"""KD loss peak memory: chunked ``kl_div`` against the naive full-vocabulary float32 KL.

Usage: python benchmarks/bench_kd_memory.py [--quick] [--device auto|cpu|cuda] [--rows 1024] [--chunk 256]

Both variants run forward + backward of KL(softmax(teacher/T) || softmax(student/T)) over N rows
with a Qwen-7B-shaped head (V = 151,936, H = 4096, N = 2 x 512, chunks of 256 rows; --quick: V = 32,000, H = 512,
N = 256, chunks of 64).
The figure is the peak memory ABOVE the inputs (head, student rows, teacher rows), i.e. what the
loss itself costs:
- CUDA: ``torch.cuda.max_memory_allocated()`` minus the allocation after the inputs exist, both
  variants in this process (bf16 inputs and head, as in training);
- CPU: each variant in a fresh subprocess, peak RSS (``ru_maxrss``) minus the RSS after the
  inputs are allocated (float32 inputs: CPU bf16 matmuls are too slow to be a fair reference).
Prints both figures, the ratio and the wall time; exits 1 if chunked > 1/4 of naive (the target; --quick only reports).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TARGET = 0.25


def _inputs(N: int, H: int, V: int, device: str, dtype):
    import torch

    torch.manual_seed(0)
    # filled in place so that no temporary raises the baseline
    w = torch.empty(V, H, device=device, dtype=dtype).normal_(0.0, 0.02)
    s = torch.empty(N, H, device=device, dtype=dtype).normal_().requires_grad_(True)
    t = torch.empty(N, H, device=device, dtype=dtype).normal_()
    return s, t, w


def _run(variant: str, s, t, w, chunk: int, temperature: float = 2.0):
    import torch

    from espnet_blsp.losses import kl_div  # imported before the baseline by the callers

    if variant == "naive":
        ls = torch.log_softmax((s @ w.t()).float() / temperature, -1)  # (N, V) float32
        lt = torch.log_softmax((t @ w.t()).float() / temperature, -1)
        loss = torch.nn.functional.kl_div(ls, lt, log_target=True, reduction="batchmean")
    else:
        loss = kl_div(s, t, w, temperature, chunk_size=chunk)
    loss.backward()
    return float(loss.detach())


def cpu_child(variant: str, N: int, H: int, V: int, chunk: int) -> None:
    import torch

    import espnet_blsp.losses  # noqa: F401  (before the baseline)

    s, t, w = _inputs(N, H, V, "cpu", torch.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    loss = _run(variant, s, t, w, chunk)
    sec = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": (peak - base) / 1024, "loss": loss, "sec": sec}))  # ru_maxrss is in KiB


def cuda_run(N: int, H: int, V: int, chunk: int) -> dict:
    import torch

    import espnet_blsp.losses  # noqa: F401

    s, t, w = _inputs(N, H, V, "cuda", torch.bfloat16)
    res = {}
    for variant in ("naive", "chunked", "naive", "chunked"):  # second round: warm, timed
        s.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        loss = _run(variant, s, t, w, chunk)
        torch.cuda.synchronize()
        sec = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() - base
        res[variant] = {"peak_mb": peak / 2**20, "loss": loss, "sec": sec}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes (V 32000, H 512, N 256)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--rows", type=int, default=None, help="N rows (default 2 x 512; --quick 256)")
    p.add_argument("--chunk", type=int, default=None, help="chunk_size of kl_div (default 256; --quick 64)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        cpu_child(args.child, *map(int, args.shape.split(",")))
        return
    H, V = (512, 32000) if args.quick else (4096, 151936)
    N = args.rows or (256 if args.quick else 2 * 512)
    args.chunk = args.chunk or (64 if args.quick else 256)
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        res = cuda_run(N, H, V, args.chunk)
        what = f"CUDA {torch.cuda.get_device_name()}, bf16 inputs, torch.cuda.max_memory_allocated"
    else:
        res = {}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
        for variant in ("naive", "chunked"):
            out = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child", variant, "--shape", f"{N},{H},{V},{args.chunk}"],
                capture_output=True, text=True, env=env,
            )
            if out.returncode != 0:
                sys.exit(f"{variant} run failed:\n{out.stderr[-2000:]}")
            res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        what = "CPU, float32 inputs, peak RSS of a fresh subprocess"
    naive, chunked = res["naive"], res["chunked"]
    ratio = chunked["peak_mb"] / max(naive["peak_mb"], 1e-9)
    print(f"KL forward+backward, N={N} rows, H={H}, V={V}, chunk={args.chunk} ({what}); memory above the inputs")
    for name, r in (("naive full-vocab fp32", naive), ("chunked kl_div", chunked)):
        print(f"  {name:22s}: {r['peak_mb']:8.0f} MB  {r['sec']:7.3f} s  loss {r['loss']:.6f}")
    print(f"  ratio chunked/naive   : {ratio:.3f} (target <= {TARGET})")
    sys.exit(0 if args.quick or ratio <= TARGET else 1)  # --quick only reports


if __name__ == "__main__":
    main()
