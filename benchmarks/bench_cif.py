#!/usr/bin/env python3
"""CIF: vectorised ``cif`` against the per-frame loop ``cif_reference``, same inputs.

Usage: python benchmarks/bench_cif.py [--quick]      (target: >= 50x faster)
"""

import argparse
import sys
import time

import torch

from espnet_blsp.adapters.cif import cif, cif_reference, scale_alphas


def timeit(fn, repeat):
    fn()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    B, T, C = (4, 300, 256) if args.quick else (16, 1500, 1280)
    torch.manual_seed(0)
    h = torch.randn(B, T, C)
    lengths = torch.randint(T // 2, T + 1, (B,))
    lengths[0] = T
    alphas = torch.sigmoid(torch.randn(B, T))
    target = (lengths.float() / 4).long()
    scaled = scale_alphas(alphas, lengths, target)
    fast = timeit(lambda: cif(h, scaled, lengths, target_lengths=target), 3)
    slow = timeit(lambda: cif_reference(h, alphas, lengths, target_lengths=target), 1)
    ratio = slow / fast
    print(f"CIF B={B} T={T} C={C} threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"  per-frame loop: {slow * 1e3:.1f} ms   vectorised: {fast * 1e3:.1f} ms   speed-up: {ratio:.0f}x (target >= 50x)")
    sys.exit(0 if ratio >= 50 or args.quick else 1)


if __name__ == "__main__":
    main()
