"""Continuous Integrate-and-Fire (Dong & Xu, 2020), vectorised.

No Python loop over frames or tokens: frame i covers the interval
``[c_{i-1}, c_i)`` of the cumulative weight ``c = cumsum(alpha)``; token j (j = 0, 1, ...)
owns ``[j * threshold, (j + 1) * threshold)``. The weight of frame i in token j is the
length of the overlap of the two intervals, so a frame straddling a boundary is split
between the token that fires and the next one, exactly as the per-frame loop does.
Each frame overlaps only a few consecutive tokens, so the weighted frames are
scatter-added into their tokens: O(T * C), not O(T * N * C).
"""

from typing import Tuple

import torch


def scale_alphas(alphas: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Rescale ``alphas`` (B, T) so that each row sums to ``target_lengths`` over valid frames."""
    mask = torch.arange(alphas.shape[1], device=alphas.device)[None] < lengths[:, None]
    alphas = alphas * mask
    total = alphas.sum(1, keepdim=True).clamp_min(1e-8)
    return alphas * (target_lengths.to(alphas.dtype)[:, None] / total)


def cif(
    hidden: torch.Tensor,
    alphas: torch.Tensor,
    lengths: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: float = 0.5,
    target_lengths: torch.Tensor = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Integrate frames into tokens.

    Shapes:
        hidden: (B, T, C) frame features
        alphas: (B, T) non-negative weights; padded frames (t >= lengths) are ignored
        lengths: (B,) valid frames
        target_lengths: (B,) optional; when given, exactly that many tokens are
            returned per utterance (training: alphas already scaled to sum to it)
        returns: (B, N, C) tokens (zero padded), (B,) token counts

    Inference (no ``target_lengths``): a token fires each time the accumulated weight
    crosses a multiple of ``threshold``; the leftover tail after the last frame is
    emitted as one more token if it weighs at least ``tail_threshold`` (its weights are
    not renormalised), and dropped otherwise.
    """
    B, T, C = hidden.shape
    mask = torch.arange(T, device=hidden.device)[None] < lengths[:, None]  # (B, T)
    a = alphas * mask
    a64 = a.double()
    csum = torch.cumsum(a64, dim=1)  # (B, T)
    total = csum[:, -1] if T > 0 else a64.new_zeros(B)
    eps = 1e-6
    if target_lengths is not None:
        counts = target_lengths.long()
    else:
        fired = torch.floor(total / threshold + eps).long()
        tail = total - fired.double() * threshold
        counts = fired + (tail >= tail_threshold - eps).long()
    N = int(counts.max()) if B > 0 else 0
    if N == 0:
        return hidden.new_zeros(B, 0, C), counts
    start = torch.cat([csum.new_zeros(B, 1), csum[:, :-1]], dim=1) / threshold  # (B, T)
    end = csum / threshold
    if target_lengths is not None:
        # Guard against round-off: the last token absorbs what is left of the sum.
        end = end * (counts.double() / (total / threshold).clamp_min(1e-12))[:, None]
        start = start * (counts.double() / (total / threshold).clamp_min(1e-12))[:, None]
    # Frame t touches tokens floor(start_t) .. floor(start_t) + K - 1; K is small (2 when
    # every alpha <= threshold), so the loop below is over K, not frames or tokens.
    j0 = torch.floor(start).long()  # (B, T)
    K = max(int(torch.ceil((end - j0.double()).max()).item()) if T > 0 else 1, 1)
    out = hidden.new_zeros(B, N, C)
    for k in range(K):
        j = j0 + k  # (B, T) token index
        w = (torch.minimum(end, j.double() + 1) - torch.maximum(start, j.double())).clamp_min(0.0) * threshold
        keep = mask & (j < counts[:, None]) & (w > 0)
        w = (w * keep).to(hidden.dtype)  # (B, T) weight of frame t in token j
        idx = j.clamp(0, N - 1)[:, :, None].expand(B, T, C)
        out = out.scatter_add(1, idx, w[:, :, None] * hidden)  # (B, T, C) -> (B, N, C)
    return out, counts


def cif_reference(
    hidden: torch.Tensor,
    alphas: torch.Tensor,
    lengths: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: float = 0.5,
    target_lengths: torch.Tensor = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Plain per-frame loop (the textbook CIF); same contract as :func:`cif`."""
    B, T, C = hidden.shape
    outs, counts = [], []
    for b in range(B):
        L = int(lengths[b])
        a = alphas[b, :L].double()
        if target_lengths is not None:
            n = int(target_lengths[b])
            a = a * (n / a.sum().clamp_min(1e-12)) if n > 0 else a * 0
        tokens, acc, state = [], 0.0, hidden.new_zeros(C)
        for t in range(L):
            alpha = float(a[t])
            while acc + alpha >= threshold - 1e-9 and (target_lengths is None or len(tokens) < n):
                use = threshold - acc
                tokens.append(state + use * hidden[b, t])
                alpha -= use
                acc, state = 0.0, hidden.new_zeros(C)
            acc += alpha
            state = state + alpha * hidden[b, t]
        if target_lengths is not None:
            while len(tokens) < n:
                tokens.append(state)
                state = hidden.new_zeros(C)
        elif acc >= tail_threshold - 1e-6:
            tokens.append(state)
        outs.append(tokens)
        counts.append(len(tokens))
    N = max(counts) if counts else 0
    out = hidden.new_zeros(B, N, C)
    for b, tokens in enumerate(outs):
        for j, tok in enumerate(tokens):
            out[b, j] = tok
    return out, torch.tensor(counts, dtype=torch.long)
