"""Continuous Integrate-and-Fire (CIF; Dong & Xu, ICASSP 2020), vectorised.

Usage::

    from espnet_blsp.adapters.cif import cif, scale_alphas
    tokens, n = cif(hidden, scale_alphas(alphas, lens, target_lens), lens)  # training
    tokens, n = cif(hidden, alphas, lens)                                   # inference

Formulation (no Python loop over frames or tokens). Measure weight in units of
``threshold`` and let ``c = cumsum(alpha) / threshold``. Frame t covers the interval
``[c_{t-1}, c_t)`` and token j owns ``[j, j + 1)``; the weight of frame t in token j is
the length of the overlap of the two intervals (times ``threshold``). This is exactly
what the per-frame loop computes: a frame that crosses a boundary gives the part up to
the boundary to the token that fires and the rest to the next one.

Each frame touches only ``ceil(c_t) - floor(c_{t-1})`` tokens (1 or 2 unless an alpha
exceeds the threshold), so the (frame, token) pairs with a weight form a sparse matrix
W of shape (B*N, B*T) with about 1 + N/T entries per frame, and the tokens are
``W @ hidden``. Because frames map monotonically onto tokens, listing the pairs frame by
frame already sorts them by token, so W is in CSR order without a sort, and
``W @ hidden`` is one ``embedding_bag`` call (bag = token, weighted sum of frame rows):
it reads each valid frame once, and autograd gives the gradients of both inputs.
"""

from typing import Tuple

import torch
from torch import nn

# Tolerance, in units of the threshold, for a boundary that the accumulated weight
# reaches up to round-off: it fires. Shared with the reference loop so both agree.
FIRE_EPS = 1e-6


def _valid_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T, device=lengths.device)[None] < lengths[:, None]  # (B, T)


def _check(hidden: torch.Tensor, alphas: torch.Tensor, lengths: torch.Tensor, threshold: float, tail_threshold: float):
    if hidden.dim() != 3 or alphas.shape != hidden.shape[:2] or lengths.shape != hidden.shape[:1]:
        raise ValueError(
            f"cif expects hidden (B, T, C), alphas (B, T), lengths (B,); got {tuple(hidden.shape)}, "
            f"{tuple(alphas.shape)}, {tuple(lengths.shape)}"
        )
    if hidden.shape[0] and (int(lengths.min()) < 0 or int(lengths.max()) > hidden.shape[1]):
        raise ValueError(f"lengths {lengths.tolist()} must lie in [0, T={hidden.shape[1]}]")
    if not threshold > 0 or not 0 < tail_threshold <= threshold:
        raise ValueError(f"need threshold > 0 and 0 < tail_threshold <= threshold; got {threshold}, {tail_threshold}")


def scale_alphas(alphas: torch.Tensor, lengths: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """Rescale each row of ``alphas`` so that its valid frames sum to its target.

    Shapes: alphas (B, T), lengths (B,), target_lengths (B,) -> (B, T), zero at padded
    frames. Differentiable (the scale depends on the alphas). The sum is taken in
    float64. A row whose alphas are all zero (sigmoid underflow) gets the target spread
    evenly over its frames instead of a division by zero.
    """
    valid = _valid_mask(lengths, alphas.shape[1])
    a = torch.where(valid, alphas, torch.zeros((), dtype=alphas.dtype, device=alphas.device))
    total = a.double().sum(1, keepdim=True)  # (B, 1)
    target = target_lengths.to(torch.float64)[:, None]
    scaled = a * (target / total.clamp_min(1e-30)).to(a.dtype)
    uniform = valid * (target / lengths.clamp_min(1)[:, None]).to(a.dtype)
    return torch.where(total > 0, scaled, uniform)


def _token_counts(total: torch.Tensor, threshold: float, tail_threshold: float) -> torch.Tensor:
    """(B,) float64 accumulated weight in threshold units -> (B,) long token counts."""
    fired = torch.floor(total + FIRE_EPS)
    tail = total - fired  # what is left after the last boundary, in threshold units
    return (fired + (tail >= tail_threshold / threshold - FIRE_EPS)).long()


def cif_weights(
    alphas: torch.Tensor, lengths: torch.Tensor, threshold: float = 1.0, tail_threshold: float = 0.5
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The sparse (token, frame) weights of CIF, listed frame by frame.

    Shapes: alphas (B, T), lengths (B,) -> weights (E,), token_rows (E,) in [0, B*N),
    frame_cols (E,) in [0, B*T), counts (B,), N; E = number of (frame, token) pairs.
    ``token_rows`` is non-decreasing and ``frame_cols`` increases within a row (CSR /
    coalesced COO order). Weights keep the autograd graph of ``alphas``.
    """
    B, T = alphas.shape
    valid = _valid_mask(lengths, T)
    zero = torch.zeros((), dtype=alphas.dtype, device=alphas.device)
    a = torch.where(valid, alphas, zero).double() / threshold  # (B, T), padded alphas ignored
    end = torch.cumsum(a, dim=1)  # (B, T) c_t
    # c_{t-1}: exactly the previous frame's end (not end - a, which round-off could push
    # below it), so consecutive frames never step back a token and rows stay sorted
    start = torch.cat([end.new_zeros(B, 1), end[:, :-1]], dim=1)  # (B, T)
    counts = _token_counts(end[:, -1] if T else a.new_zeros(B), threshold, tail_threshold)
    N = int(counts.max()) if B else 0

    # 1. valid frames in (b, t) order, as flat indices b * T + t, and the tokens each touches
    flat = valid.reshape(-1).nonzero().squeeze(1)  # (F,)
    s, e = start.reshape(-1)[flat], end.reshape(-1)[flat]  # (F,) c_{t-1}, c_t
    first = torch.floor(s)  # (F,) first token of the frame
    spans = (torch.ceil(e) - first).clamp_min(1).long()  # (F,) tokens touched, >= 1
    # 2. one entry per (frame, token) pair, still in frame order: (F,) -> (E,)
    frame = torch.repeat_interleave(torch.arange(flat.numel(), device=a.device), spans)
    k = torch.arange(frame.numel(), device=a.device) - (torch.cumsum(spans, 0) - spans)[frame]
    j = first[frame] + k  # (E,) token index (float64); k = 0, 1, ... within a frame
    b = flat[frame] // T  # (E,) utterance
    # 3. drop tokens that never fire (a dropped leftover); token rows are b * N + j
    keep = (j < counts[b]).nonzero().squeeze(1)
    frame, j, b = frame[keep], j[keep], b[keep]
    weight = (torch.minimum(e[frame], j + 1) - torch.maximum(s[frame], j)).clamp_min(0.0) * threshold
    return weight, b * N + j.long(), flat[frame], counts, N


def cif(
    hidden: torch.Tensor,
    alphas: torch.Tensor,
    lengths: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: float = 0.5,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Integrate frames into tokens (vectorised; see the module docstring).

    Shapes:
        hidden:  (B, T, C) frame features (finite everywhere; padded frames get weight 0);
                 half precision is summed in float32 and returned in its own dtype
        alphas:  (B, T) non-negative weights; padded frames (t >= lengths) are ignored
        lengths: (B,) valid frames per utterance
        returns: tokens (B, N, C), zero after each utterance's count; counts (B,) long,
                 N = max(counts)

    A token fires each time the accumulated alpha crosses a multiple of ``threshold``
    (reaching it up to 1e-6 relative round-off counts as crossing); the token is the
    alpha-weighted sum of its frames. After the last frame, a leftover of at least
    ``tail_threshold`` is emitted as one more token, with its weights NOT renormalised
    (it is the plain weighted sum of the leftover), and a smaller leftover is dropped.

    Training: with ``alphas = scale_alphas(alphas, lengths, n) * threshold`` exactly n
    tokens come out: round-off leaves the sum within ~1e-6 * n of n, so either the n-th
    boundary fires (leftover ~0 is dropped) or the leftover ~threshold is emitted as the
    n-th token, for any 0 < tail_threshold < threshold not within round-off of either end.
    Gradients flow to ``hidden`` and to ``alphas`` (through the token weights).
    """
    _check(hidden, alphas, lengths, threshold, tail_threshold)
    B, T, C = hidden.shape
    weights, rows, cols, counts, N = cif_weights(alphas, lengths, threshold, tail_threshold)
    if N == 0:
        return hidden.new_zeros(B, 0, C), counts
    # W @ hidden as a weighted bag-of-rows sum: bag r = token r, its entries are the
    # frames listed for it (contiguous, as rows are sorted); autograd covers both inputs.
    offsets = torch.zeros(B * N + 1, dtype=torch.long, device=rows.device)
    offsets[1:] = torch.cumsum(torch.bincount(rows, minlength=B * N), 0)  # (B*N + 1,)
    work = hidden if hidden.dtype in (torch.float32, torch.float64) else hidden.float()
    out = nn.functional.embedding_bag(
        cols, work.reshape(B * T, C), offsets, mode="sum",
        per_sample_weights=weights.to(work.dtype), include_last_offset=True,
    )  # (B*T, C) -> (B*N, C)
    return out.view(B, N, C).to(hidden.dtype), counts


def cif_reference(
    hidden: torch.Tensor,
    alphas: torch.Tensor,
    lengths: torch.Tensor,
    threshold: float = 1.0,
    tail_threshold: float = 0.5,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The textbook CIF: a plain loop over utterances and frames, in float64.

    Same contract as :func:`cif`; kept as the test oracle and the benchmark baseline.
    """
    _check(hidden, alphas, lengths, threshold, tail_threshold)
    B, T, C = hidden.shape
    fire_at = threshold * (1.0 - FIRE_EPS)
    utterances = []
    for b in range(B):
        tokens, acc, state = [], 0.0, hidden.new_zeros(C, dtype=torch.float64)
        for t in range(int(lengths[b])):
            alpha, h = float(alphas[b, t]), hidden[b, t].double()
            while acc + alpha >= fire_at:  # fire (more than once if alpha > threshold)
                used = threshold - acc
                tokens.append(state + used * h)
                alpha -= used
                acc, state = 0.0, hidden.new_zeros(C, dtype=torch.float64)
            acc += alpha
            state = state + alpha * h
        if acc >= tail_threshold - FIRE_EPS * threshold:
            tokens.append(state)  # the leftover, not renormalised
        utterances.append(tokens)
    counts = torch.tensor([len(tokens) for tokens in utterances], dtype=torch.long)
    out = hidden.new_zeros(B, int(counts.max()) if B else 0, C)
    for b, tokens in enumerate(utterances):
        if tokens:
            out[b, : len(tokens)] = torch.stack(tokens).to(hidden.dtype)
    return out, counts.to(lengths.device)
