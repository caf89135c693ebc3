#!/usr/bin/env python3
"""KD loss peak memory: chunked ``kl_div`` against naive full-vocabulary float32 KL.

Each variant runs forward + backward in a fresh subprocess; the figure is the peak RSS
above the process's own baseline after the inputs are allocated.

Usage: python benchmarks/bench_kd_memory.py [--quick]     (target: ours <= 1/4 of naive)
"""

import argparse
import json
import resource
import subprocess
import sys


def child(variant: str, N: int, H: int, V: int) -> None:
    import torch

    from espnet_blsp.losses import kl_div

    torch.manual_seed(0)
    # float32 inputs so both variants run the same float32 matmuls on CPU (bf16 matmuls
    # are slow there); the head is an input, allocated before the baseline is taken.
    w = torch.empty(V, H).normal_(0.0, 0.02)  # in place: no temporary raises the baseline
    s = torch.empty(N, H).normal_().requires_grad_(True)
    t = torch.empty(N, H).normal_()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if variant == "naive":
        ls = torch.log_softmax(s.float() @ w.float().t() / 2.0, -1)  # (N, V) float32
        lt = torch.log_softmax(t.float() @ w.float().t() / 2.0, -1)
        loss = (lt.exp() * (lt - ls)).sum(-1).mean()
    else:
        loss = kl_div(s, t, w, 2.0, chunk_size=64)
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": (peak - base) / 1024, "loss": float(loss)}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", default=None)
    p.add_argument("--shape", default=None)
    args = p.parse_args()
    if args.child:
        child(args.child, *map(int, args.shape.split(",")))
        return
    N, H, V = (128, 512, 32000) if args.quick else (512, 4096, 151936)
    res = {}
    for variant in ("naive", "chunked"):
        out = subprocess.run([sys.executable, __file__, "--child", variant, "--shape", f"{N},{H},{V}"],
                             capture_output=True, text=True, check=True)
        res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = res["chunked"]["peak_mb"] / max(res["naive"]["peak_mb"], 1e-9)
    print(f"KL loss forward+backward, N={N} rows, H={H}, V={V} (Qwen-7B head), float32")
    print(f"  naive full-vocab fp32: {res['naive']['peak_mb']:.0f} MB   chunked: {res['chunked']['peak_mb']:.0f} MB"
          f"   ratio: {ratio:.3f} (target <= 0.25); losses {res['naive']['loss']:.5f} vs {res['chunked']['loss']:.5f}")
    sys.exit(0 if ratio <= 0.25 or args.quick else 1)


if __name__ == "__main__":
    main()
