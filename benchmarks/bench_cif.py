#!/usr/bin/env python3
"""CIF speed: the vectorised ``cif`` against the per-frame loop ``cif_reference``, same inputs.

Usage: python benchmarks/bench_cif.py [--quick] [--threads N]

Default shape: B=16 utterances of up to T=1500 encoder frames (30 s of Whisper output)
with C=1280 channels (Whisper large-v2), alphas scaled so that a token fires every
~4 frames, as in training. Both run on the CPU in the same process; times are the best
of several runs. Target: the forward pass >= 50x faster than the loop (exit 1 if
missed; --quick runs small shapes and only reports). Forward+backward of ``cif`` is
reported too, for information.
"""

import argparse
import sys
import time

import torch

from espnet_blsp.adapters.cif import cif, cif_reference, scale_alphas

TARGET = 50.0


def best_time(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes, no target check")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    B, T, C = (4, 300, 256) if args.quick else (16, 1500, 1280)
    torch.manual_seed(0)
    hidden = torch.randn(B, T, C)
    lengths = torch.randint(T // 2, T + 1, (B,))
    lengths[0] = T
    alphas = torch.sigmoid(torch.randn(B, T))
    target = lengths // 4
    scaled = scale_alphas(alphas, lengths, target)

    out, n = cif(hidden, scaled, lengths)
    ref, m = cif_reference(hidden, scaled, lengths)
    assert torch.equal(n, target) and torch.equal(m, target)
    max_err = (out - ref).abs().max().item()

    with torch.no_grad():
        fast = best_time(lambda: cif(hidden, scaled, lengths), 5)
    slow = best_time(lambda: cif_reference(hidden, scaled, lengths), 2)
    h_req, a_req = hidden.clone().requires_grad_(), alphas.clone().requires_grad_()

    def train_step():
        y, _ = cif(h_req, scale_alphas(a_req, lengths, target), lengths)
        y.sum().backward()

    fwd_bwd = best_time(train_step, 3)
    ratio = slow / fast
    print(
        f"CIF B={B} T={T} C={C} tokens={target.sum().item()} | torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(f"  per-frame loop (cif_reference):  {slow * 1e3:9.1f} ms")
    print(f"  vectorised cif, forward:         {fast * 1e3:9.1f} ms   speed-up {ratio:6.1f}x (target >= {TARGET:.0f}x)")
    print(f"  vectorised cif, forward+backward:{fwd_bwd * 1e3:9.1f} ms   (loop has no backward; info only)")
    print(f"  max |cif - loop| = {max_err:.2e}, counts equal the targets in both")
    if args.quick:
        print("  --quick: target not checked")
        return
    sys.exit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
