"""Chunked CE / KL against naive full-vocabulary float32 references; CIF quantity loss by hand."""

import pytest
import torch
import torch.nn.functional as F

from espnet_blsp.losses import cif_quantity_loss, kl_div, kl_div_and_agreement, kl_div_and_correct, response_ce

N, H, V = 10, 16, 300


def _f(x: torch.Tensor) -> float:
    return x.detach().item()


def _data(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, H, generator=g).to(dtype).requires_grad_(True)
    other = torch.randn(N, H, generator=g).to(dtype)
    w = (torch.randn(V, H, generator=g) * 0.5).to(dtype)
    t = torch.randint(0, V, (N,), generator=g)
    return h, other, w, t


@pytest.mark.parametrize("chunk", [1, 3, 7, N, 1000])  # 3 and 7 do not divide N = 10
def test_ce_equals_full_vocab(chunk):
    h, _, w, t = _data(0)
    loss, correct = response_ce(h, w, t, chunk)
    ref_h = h.detach().clone().requires_grad_(True)
    logits = ref_h @ w.t()  # (N, V) float32: the naive reference
    ref = F.cross_entropy(logits, t)
    ref.backward()
    (2.5 * loss).backward()  # grad_output is applied
    assert loss.dtype == torch.float32 and abs(_f(loss) - _f(ref)) <= 1e-5
    assert torch.allclose(h.grad, 2.5 * ref_h.grad, atol=1e-5, rtol=0)
    assert int(correct) == int((logits.argmax(-1) == t).sum()) and not correct.requires_grad


def test_accuracy_count_by_hand():
    w = torch.eye(4)  # logits = the hidden rows themselves
    h = torch.tensor([[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 0, 5.0]])
    loss, correct = response_ce(h, w, torch.tensor([0, 2, 3]), chunk_size=2)
    assert int(correct) == 2  # rows 0 and 2 are right, row 1 predicts 1 instead of 2
    p_right = torch.tensor(5.0).exp() / (torch.tensor(5.0).exp() + 3)
    want = (-2 * p_right.log() - (1 / (torch.tensor(5.0).exp() + 3)).log()) / 3
    assert _f(loss) == pytest.approx(_f(want), abs=1e-6)


@pytest.mark.parametrize("chunk", [1, 4, 7, 1000])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_equals_full_vocab(chunk, temperature):
    s, te, w, _ = _data(1)
    te.requires_grad_(True)
    loss = kl_div(s, te, w, temperature, chunk)
    ref_s = s.detach().clone().requires_grad_(True)
    ref = F.kl_div(
        F.log_softmax(ref_s @ w.t() / temperature, -1), F.log_softmax(te.detach() @ w.t() / temperature, -1),
        log_target=True, reduction="batchmean",
    )  # mean over rows of sum over V, not multiplied by T^2
    ref.backward()
    (3.0 * loss).backward()
    assert abs(_f(loss) - _f(ref)) <= 1e-5
    assert torch.allclose(s.grad, 3.0 * ref_s.grad, atol=1e-5, rtol=0)
    assert te.grad is None  # the teacher side gets no gradient


def test_kl_of_identical_rows_is_zero():
    s, _, w, _ = _data(2)
    loss = kl_div(s, s.detach(), w)
    loss.backward()
    assert abs(_f(loss)) < 1e-6 and s.grad.abs().max() < 1e-6


def test_bf16_inputs_give_bf16_grads_close_to_float32():
    h, te, w, t = _data(3, torch.bfloat16)
    ce, _ = response_ce(h, w, t, chunk_size=4)
    kl = kl_div(h, te, w, 2.0, chunk_size=4)
    (ce + kl).backward()
    assert h.grad.dtype == torch.bfloat16 and ce.dtype == kl.dtype == torch.float32
    h32 = h.detach().float().requires_grad_(True)
    ref = F.cross_entropy(h32 @ w.float().t(), t) + F.kl_div(
        F.log_softmax(h32 @ w.float().t() / 2, -1), F.log_softmax(te.float() @ w.float().t() / 2, -1),
        log_target=True, reduction="batchmean",
    )
    ref.backward()
    assert _f(ce + kl) == pytest.approx(_f(ref), rel=2e-2)
    assert torch.allclose(h.grad.float(), h32.grad, atol=2e-2, rtol=5e-2)


def test_no_grad_and_empty_and_errors():
    h, te, w, t = _data(4)
    with torch.no_grad():
        loss, _ = response_ce(h, w, t)
        assert loss.grad_fn is None and kl_div(h, te, w).grad_fn is None
    e = torch.zeros(0, H, requires_grad=True)
    loss, c = response_ce(e, w, torch.zeros(0, dtype=torch.long))
    kl = kl_div(e, torch.zeros(0, H), w)
    (loss + kl).backward()
    assert _f(loss) == 0.0 and _f(kl) == 0.0 and int(c) == 0
    assert e.grad is not None and e.grad.shape == (0, H)
    with pytest.raises(ValueError, match="requires grad"):
        response_ce(h, w.clone().requires_grad_(True), t)
    with pytest.raises(ValueError, match="requires grad"):
        kl_div(h, te, w.clone().requires_grad_(True))
    with pytest.raises(ValueError, match="-100"):
        response_ce(h, w, torch.full((N,), -100))
    with pytest.raises(ValueError, match="differ"):
        kl_div(h, te[:3], w)


def test_cif_quantity_by_hand():
    a = torch.tensor([3.0, 5.0, 2.0], requires_grad=True)
    loss = cif_quantity_loss(a, torch.tensor([4, 5, 1]))
    assert _f(loss) == pytest.approx((1 / 4 + 0 + 1 / 1) / 3)  # mean of |a - n| / n
    loss.backward()
    assert a.grad.tolist() == pytest.approx([-1 / 12, 0.0, 1 / 3])
    assert float(cif_quantity_loss(torch.tensor([0.5]), torch.tensor([0]))) == 0.5  # n clamped to 1


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_kl_div_and_correct_counts_student_argmax_hits(chunk):
    s, te, w, _ = _data(4)
    targets = (s.detach() @ w.t()).argmax(-1)
    targets[::2] = (targets[::2] + 1) % w.shape[0]  # every other row misses
    loss, correct = kl_div_and_correct(s, te, w, targets, 2.0, chunk)
    assert _f(loss) == pytest.approx(_f(kl_div(s, te, w, 2.0, chunk)), abs=1e-6)
    assert int(correct) == s.shape[0] - len(targets[::2])
    loss.backward()
    assert s.grad.abs().max() > 0


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_kl_div_and_agreement_counts_rows_where_student_and_teacher_argmax_agree(chunk):
    s, te, w, _ = _data(5)
    te = te.clone()
    te[::3] = s.detach()[::3]  # these rows agree for sure (identical hidden rows)
    loss, agree = kl_div_and_agreement(s, te, w, 2.0, chunk)
    want = int(((s.detach() @ w.t()).argmax(-1) == (te @ w.t()).argmax(-1)).sum())
    assert int(agree) == want and want >= len(te[::3]) and want < s.shape[0]
    assert _f(loss) == pytest.approx(_f(kl_div(s, te, w, 2.0, chunk)), abs=1e-6)
    assert not agree.requires_grad


def test_embedding_ctc_by_hand_and_gradients():
    """Logits are y . [b; E]^T with blank 0 and token v at v + 1; padding ids are ignored."""
    from espnet_blsp.losses import embedding_ctc

    g = torch.Generator().manual_seed(0)
    B, N, H, V = 2, 6, 8, 11
    y = torch.randn(B, N, H, generator=g, requires_grad=True)
    emb = torch.randn(V, H, generator=g)
    blank = torch.randn(H, generator=g, requires_grad=True)
    targets = torch.tensor([[3, 0, 7], [5, -1, -1]])
    lens, t_lens = torch.tensor([6, 4]), torch.tensor([3, 1])
    got = embedding_ctc(y, lens, emb, blank, targets, t_lens)
    logits = torch.einsum("bnh,vh->bnv", y, torch.cat([blank[None], emb]))  # (B, N, V + 1)
    per_utt = [
        torch.nn.functional.ctc_loss(logits[b, : lens[b]].log_softmax(-1)[:, None], targets[b : b + 1, : t_lens[b]] + 1,
                                     lens[b : b + 1], t_lens[b : b + 1], blank=0, reduction="sum")
        / t_lens[b]
        for b in range(B)
    ]
    assert torch.allclose(got, torch.stack(per_utt).mean(), atol=1e-5)
    got.backward()
    assert y.grad[0].abs().sum() > 0 and y.grad[1, 4:].abs().sum() == 0  # padded frames get nothing
    assert blank.grad.abs().sum() > 0
