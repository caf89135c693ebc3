"""Losses of BLSP and BLSP-KD as pure functions of tensors.

CE and KL take hidden states already gathered at the N positions that need logits and
the frozen LM head weight (V, H). Logits are computed in float32 one chunk of rows at a
time, in forward AND backward: the gradient w.r.t. the hidden rows is computed chunk by
chunk inside forward and only it (N, H) is kept, so no [N, V] float32 tensor is ever
held (at V = 151,936 that is 0.6 MB per row). The matmuls run in the head's dtype
(bf16 on GPU, as HF computes logits) and softmax/log-sum-exp in float32; the head is
never copied to float32.
"""

from typing import Tuple

import torch


def _check_weight(weight: torch.Tensor) -> None:
    if weight.requires_grad:
        raise ValueError("the LM head must be frozen: these losses give no gradient for it")


class _ChunkedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size):
        N = hidden.shape[0]
        loss = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad = torch.empty_like(hidden) if hidden.requires_grad else None
        w = weight
        for s in range(0, N, chunk_size):
            h = hidden[s : s + chunk_size].to(w.dtype)
            t = targets[s : s + chunk_size]
            logits = (h @ w.t()).float()  # (C, H) @ (H, V) -> (C, V) float32
            lse = torch.logsumexp(logits, -1)
            loss += (lse - logits.gather(1, t[:, None])[:, 0]).sum()
            correct += (logits.argmax(-1) == t).sum()
            if grad is not None:
                p = torch.softmax(logits, -1)
                p[torch.arange(len(t)), t] -= 1.0
                grad[s : s + chunk_size] = ((p / N).to(w.dtype) @ w).to(hidden.dtype)
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(correct)
        return loss / N, correct

    @staticmethod
    def backward(ctx, grad_loss, grad_correct):
        (grad,) = ctx.saved_tensors
        return (grad * grad_loss.to(grad.dtype) if grad is not None else None), None, None, None


class _ChunkedKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher, weight, temperature, chunk_size):
        N = student.shape[0]
        loss = student.new_zeros((), dtype=torch.float32)
        grad = torch.empty_like(student) if student.requires_grad else None
        w = weight
        for s in range(0, N, chunk_size):
            # at most four (C, V) float32 buffers live at once; updates are in place
            ls = torch.log_softmax((student[s : s + chunk_size].to(w.dtype) @ w.t()).float().div_(temperature), -1)
            lt = torch.log_softmax((teacher[s : s + chunk_size].to(w.dtype) @ w.t()).float().div_(temperature), -1)
            pt = lt.exp()
            loss += torch.sum(pt * lt.sub_(ls))  # sum p_t (log p_t - log p_s)
            del lt
            if grad is not None:
                # d/dz_s KL(pt || softmax(z_s / T)) = (ps - pt) / T
                g = ls.exp_().sub_(pt).div_(temperature * N)
                grad[s : s + chunk_size] = (g.to(w.dtype) @ w).to(student.dtype)
        ctx.save_for_backward(grad)
        return loss / N

    @staticmethod
    def backward(ctx, grad_loss):
        (grad,) = ctx.saved_tensors
        return (grad * grad_loss.to(grad.dtype) if grad is not None else None), None, None, None, None


def response_ce(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 256
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``targets`` (N,) under logits ``hidden @ weight.T``.

    Shapes: hidden (N, H), weight (V, H), targets (N,).
    Returns (mean over the N rows, number of correct argmax predictions).
    N = 0 gives (0, 0).
    """
    _check_weight(weight)
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0, torch.zeros((), dtype=torch.long, device=hidden.device)
    return _ChunkedCE.apply(hidden, weight, targets, chunk_size)


def kl_div(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor,
    temperature: float = 2.0,
    chunk_size: int = 256,
) -> torch.Tensor:
    """KL(softmax(teacher logits / T) || softmax(student logits / T)), mean over N rows.

    Shapes: student (N, H), teacher (N, H) (no gradient), weight (V, H).
    Not multiplied by T^2. N = 0 gives 0.
    """
    _check_weight(weight)
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"student has {student.shape[0]} rows, teacher {teacher.shape[0]}")
    if student.shape[0] == 0:
        return student.sum() * 0.0
    return _ChunkedKL.apply(student, teacher.detach(), weight, temperature, chunk_size)


def cif_quantity_loss(alpha_sum: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
    """CIF quantity loss |sum(alpha) - n| / n, mean over the batch. Shapes: (B,), (B,)."""
    n = target_lens.to(alpha_sum.dtype).clamp_min(1.0)
    return ((alpha_sum - n).abs() / n).mean()
