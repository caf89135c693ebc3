"""Losses of BLSP and BLSP-KD as pure functions of tensors (no model forward inside).

Usage::

    resp = batch.targets != -100                                   # (B, T)
    ce, n_correct = response_ce(h_s[resp], llm.lm_head_weight, batch.targets[resp])
    kl = kl_div(h_s[resp_s], h_t[resp_t], llm.lm_head_weight, temperature=2.0)
    kl, n_correct = kl_div_and_correct(h_s[resp_s], h_t[resp_t], llm.lm_head_weight, batch.targets[resp_s])
    l_cif = cif_quantity_loss(alpha_sum, text_lengths)

Shapes: N rows (positions that need logits, gathered by the caller), H hidden, V vocabulary.

CE and KL never build the (B, T, V) logits, nor an (N, V) float32 tensor: logits are computed
one chunk of ``chunk_size`` rows at a time, in float32, in forward AND backward. They are
``torch.autograd.Function``s whose forward computes, chunk by chunk, both the loss and its
gradient w.r.t. the (student) hidden rows, ``grad_h = (softmax - target_dist) / N @ W``;
only that (N, H) gradient is kept for backward, which scales it by ``grad_output``. At
V = 151,936 one float32 row of logits is 0.6 MB, so a chunk of 256 rows holds ~155 MB per
(C, V) buffer and at most four such buffers live at once.

Precision: a float32/float64 head gives float32 logits of full precision; a bf16/fp16 head on
CUDA is multiplied with float32 output (``torch.mm(..., out_dtype=torch.float32)``, float32
accumulation, the head is never copied to float32); on CPU a half-precision head gives logits
rounded once to its dtype (as HF computes them) before the float32 softmax. Gradients are
returned in the dtype of the hidden rows.

The LM head is frozen in BLSP/BLSP-KD: these losses give no gradient for ``weight`` and raise
ValueError if ``weight.requires_grad``.
"""

import functools
from typing import Tuple

import torch

IGNORE_ID = -100


def _check(hidden: torch.Tensor, weight: torch.Tensor, chunk_size: int) -> None:
    if weight.requires_grad:
        raise ValueError(
            "the LM head weight requires grad, but these chunked losses give no gradient for it "
            "(the LLM is frozen); pass weight.detach() or freeze it"
        )
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"expected hidden (N, H) and weight (V, H), got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")


@functools.lru_cache(maxsize=None)
def _has_fp32_out_mm(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``torch.mm(a, b, out_dtype=torch.float32)`` runs for half-precision ``dtype`` here."""
    if dtype not in (torch.bfloat16, torch.float16) or device.type != "cuda":
        return False
    try:
        with torch.autocast(device.type, enabled=False):  # the probe must not see ESPnet's autocast
            a = torch.ones(2, 2, device=device, dtype=dtype)
            return torch.mm(a, a, out_dtype=torch.float32).dtype == torch.float32
    except (RuntimeError, TypeError, NotImplementedError):
        return False


def _mm_f32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b in the dtype of b with a float32 result (float32 accumulation on CUDA)."""
    a = a.to(b.dtype)
    if _has_fp32_out_mm(b.device, b.dtype):
        return torch.mm(a, b, out_dtype=torch.float32)
    return torch.mm(a, b).float()


def _logits(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(C, H) rows x (V, H) head -> (C, V) float32 logits."""
    return _mm_f32(h, w.t())


def _rows_grad(g: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(C, V) float32 gradient w.r.t. logits -> (C, H) gradient w.r.t. the hidden rows."""
    return _mm_f32(g, w).to(dtype)


class _ChunkedCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_size, need_grad):
        N = hidden.shape[0]
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad = torch.empty_like(hidden) if need_grad else None
        for s in range(0, N, chunk_size):
            t = targets[s : s + chunk_size]  # (C,)
            z = _logits(hidden[s : s + chunk_size], weight)  # (C, V) float32
            rows = torch.arange(len(t), device=z.device)
            correct += (z.argmax(-1) == t).sum()
            lse = torch.logsumexp(z, -1)  # (C,)
            loss += (lse - z[rows, t]).sum()
            if need_grad:
                p = z.sub_(lse[:, None]).exp_()  # softmax, in place: (C, V)
                p[rows, t] -= 1.0
                grad[s : s + chunk_size] = _rows_grad(p.div_(N), weight, hidden.dtype)
            del z
        ctx.save_for_backward(grad if need_grad else None)
        ctx.mark_non_differentiable(correct)
        return loss / N, correct

    @staticmethod
    def backward(ctx, grad_loss, grad_correct):
        (grad,) = ctx.saved_tensors
        g = grad * grad_loss.to(grad.dtype) if grad is not None else None
        return g, None, None, None, None


class _ChunkedKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher, weight, temperature, chunk_size, need_grad, targets):
        # targets: None, (N,) ids, or "teacher" (count the rows whose argmax agrees with the teacher's)
        N = student.shape[0]
        loss = torch.zeros((), dtype=torch.float32, device=student.device)
        correct = torch.zeros((), dtype=torch.long, device=student.device)
        grad = torch.empty_like(student) if need_grad else None
        for s in range(0, N, chunk_size):
            zs = _logits(student[s : s + chunk_size], weight)  # (C, V) float32
            zt = _logits(teacher[s : s + chunk_size], weight)  # (C, V) float32
            if targets is not None:  # argmax is unchanged by the temperature
                ref = zt.argmax(-1) if isinstance(targets, str) else targets[s : s + chunk_size]
                correct += (zs.argmax(-1) == ref).sum()
            ls = torch.log_softmax(zs.div_(temperature), -1)  # (C, V)
            del zs
            lt = torch.log_softmax(zt.div_(temperature), -1)  # (C, V)
            del zt
            pt = lt.exp()
            lt.sub_(ls)  # log p_t - log p_s, in place
            loss += torch.dot(pt.view(-1), lt.view(-1))  # sum p_t (log p_t - log p_s), no (C, V) temp
            del lt
            if need_grad:
                # d/dz_s KL(p_t || softmax(z_s / T)) = (p_s - p_t) / T, per row; mean over N
                g = ls.exp_().sub_(pt).div_(temperature * N)
                grad[s : s + chunk_size] = _rows_grad(g, weight, student.dtype)
            del ls, pt
        ctx.save_for_backward(grad if need_grad else None)
        ctx.mark_non_differentiable(correct)
        return loss / N, correct

    @staticmethod
    def backward(ctx, grad_loss, grad_correct):
        (grad,) = ctx.saved_tensors
        g = grad * grad_loss.to(grad.dtype) if grad is not None else None
        return g, None, None, None, None, None, None


def response_ce(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int = 256
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``targets`` under the logits ``hidden @ weight.T``, chunked over rows.

    Shapes: hidden (N, H) (any float dtype), weight (V, H) (frozen), targets (N,) long.
    Returns ``(loss, n_correct)``: loss = MEAN over the N rows of -log softmax(logits)[target]
    (float32 scalar); n_correct = number of rows whose argmax equals the target (long scalar,
    no gradient; accuracy = n_correct / N). N = 0 gives (0.0, 0) and a zero gradient.
    """
    _check(hidden, weight, chunk_size)
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match hidden rows {hidden.shape[0]}")
    if hidden.shape[0] == 0:
        return hidden.sum().float() * 0.0, torch.zeros((), dtype=torch.long, device=hidden.device)
    if bool(((targets < 0) | (targets >= weight.shape[0])).any()):
        raise ValueError(
            f"targets must be in [0, {weight.shape[0]}); gather the rows with targets != {IGNORE_ID} first"
        )
    need_grad = torch.is_grad_enabled() and hidden.requires_grad
    return _ChunkedCE.apply(hidden, weight, targets, chunk_size, need_grad)


def kl_div(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor,
    temperature: float = 2.0,
    chunk_size: int = 256,
) -> torch.Tensor:
    """KL(softmax(teacher logits / T) || softmax(student logits / T)), chunked over rows.

    Shapes: student (N, H), teacher (N, H) (detached: no gradient flows to it), weight (V, H).
    Returns the MEAN over the N rows of the per-row KL (sum over V), a float32 scalar; it is
    NOT multiplied by T^2 (scale the loss weight instead). N = 0 gives 0.0 and a zero gradient.
    """
    return _kl_div(student, teacher, weight, temperature, chunk_size, None)[0]


def kl_div_and_correct(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 2.0,
    chunk_size: int = 256,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`kl_div` and, from the same student logits, the number of rows whose argmax is
    ``targets`` (N,) (long scalar, no gradient): the accuracy statistic of a KD run without
    a CE term, at no extra pass over the LM head."""
    if targets.shape != student.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match student rows {student.shape[0]}")
    return _kl_div(student, teacher, weight, temperature, chunk_size, targets)


def kl_div_and_agreement(
    student: torch.Tensor,
    teacher: torch.Tensor,
    weight: torch.Tensor,
    temperature: float = 2.0,
    chunk_size: int = 256,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`kl_div` and the number of rows whose student argmax equals the teacher's argmax
    (long scalar, no gradient): a temperature-free measure of how often the speech input
    makes the LLM predict what the text input makes it predict (the input-KL agreement)."""
    return _kl_div(student, teacher, weight, temperature, chunk_size, "teacher")


def _kl_div(student, teacher, weight, temperature, chunk_size, targets):
    _check(student, weight, chunk_size)
    if teacher.shape != student.shape:
        raise ValueError(f"student rows {tuple(student.shape)} and teacher rows {tuple(teacher.shape)} differ")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if student.shape[0] == 0:
        return student.sum().float() * 0.0, torch.zeros((), dtype=torch.long, device=student.device)
    need_grad = torch.is_grad_enabled() and student.requires_grad
    return _ChunkedKL.apply(student, teacher.detach(), weight, float(temperature), chunk_size, need_grad, targets)


def cif_quantity_loss(alpha_sum: torch.Tensor, target_lens: torch.Tensor) -> torch.Tensor:
    """CIF quantity loss ``|sum(alpha) - n| / n``, MEAN over the batch.

    Shapes: alpha_sum (B,) float (sum of the CIF weights before any rescaling), target_lens (B,)
    (n = transcript token count; clamped to >= 1 so an empty transcript cannot give inf/NaN).
    """
    if alpha_sum.shape != target_lens.shape or alpha_sum.dim() != 1:
        raise ValueError(f"alpha_sum {tuple(alpha_sum.shape)} and target_lens {tuple(target_lens.shape)} must be (B,)")
    n = target_lens.to(alpha_sum.dtype).clamp_min(1.0)
    return ((alpha_sum - n).abs() / n).mean()


def embedding_ctc(
    y: torch.Tensor,
    y_lens: torch.Tensor,
    embedding: torch.Tensor,
    blank: torch.Tensor,
    targets: torch.Tensor,
    target_lens: torch.Tensor,
) -> torch.Tensor:
    """CTC of the adapter outputs against the transcript tokens, scored in the LLM's own input
    embedding space: the logit of token v at output frame t is ``y_t . E_v``, and a trainable
    ``blank`` vector gives the blank logit ``y_t . b``. Minimising it puts the adapter outputs
    of the frames that carry a token near that token's input embedding (what the LLM reads
    for text), which gives the behaviour-alignment losses words to work with from the first
    steps (our addition for little data, see README; off in the papers' configs).

    Shapes: y (B, N, H) adapter outputs, y_lens (B,), embedding (V, H) frozen, blank (H,),
    targets (B, S) token ids (padding < 0), target_lens (B,). Returns the MEAN over the batch
    of the per-utterance CTC loss divided by its target length (``F.ctc_loss`` "mean"); an
    utterance with fewer frames than CTC needs contributes 0 (``zero_infinity``).
    """
    if y.dim() != 3 or embedding.dim() != 2 or y.shape[-1] != embedding.shape[1] or blank.shape != y.shape[-1:]:
        raise ValueError(
            f"embedding_ctc expects y (B, N, H), embedding (V, H), blank (H,); got {tuple(y.shape)}, "
            f"{tuple(embedding.shape)}, {tuple(blank.shape)}"
        )
    tok = torch.matmul(y.to(embedding.dtype), embedding.t()).float()  # (B, N, H) -> (B, N, V)
    blk = (y.float() @ blank.float())[..., None]  # (B, N, 1)
    logp = torch.cat([blk, tok], dim=-1).log_softmax(-1)  # (B, N, V + 1); index 0 = blank
    tgt = torch.where(targets >= 0, targets + 1, torch.zeros_like(targets))
    return torch.nn.functional.ctc_loss(
        logp.transpose(0, 1), tgt, y_lens, target_lens, blank=0, reduction="mean", zero_infinity=True
    )
