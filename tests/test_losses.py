import pytest
import torch
import torch.nn.functional as F

from espnet_blsp.losses import cif_quantity_loss, kl_div, response_ce


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_ce_equals_full_vocab(chunk):
    torch.manual_seed(0)
    h = torch.randn(10, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 8, dtype=torch.float64)
    t = torch.randint(0, 50, (10,))
    loss, correct = response_ce(h, w, t, chunk)
    h2 = h.detach().clone().requires_grad_(True)
    logits = h2 @ w.t()
    ref = F.cross_entropy(logits, t)
    ref.backward()
    loss.backward()
    assert torch.allclose(loss, ref.float(), atol=1e-5)
    assert int(correct) == int((logits.argmax(-1) == t).sum())
    assert torch.allclose(h.grad, h2.grad, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_kl_equals_full_vocab(chunk):
    torch.manual_seed(1)
    s = torch.randn(9, 8, dtype=torch.float64, requires_grad=True)
    te = torch.randn(9, 8, dtype=torch.float64)
    w = torch.randn(40, 8, dtype=torch.float64)
    T = 2.0
    loss = kl_div(s, te, w, T, chunk)
    s2 = s.detach().clone().requires_grad_(True)
    ref = F.kl_div(
        F.log_softmax(s2 @ w.t() / T, -1), F.log_softmax(te @ w.t() / T, -1),
        log_target=True, reduction="batchmean",
    )
    ref.backward()
    (3.0 * loss).backward()
    assert torch.allclose(loss, ref.float(), atol=1e-5)
    assert torch.allclose(s.grad, 3.0 * s2.grad, atol=1e-5)


def test_empty_and_frozen_head():
    w = torch.randn(5, 4)
    h = torch.zeros(0, 4, requires_grad=True)
    loss, c = response_ce(h, w, torch.zeros(0, dtype=torch.long))
    assert float(loss.detach()) == 0.0 and int(c) == 0 and not torch.isnan(loss.detach())
    assert float(kl_div(h, torch.zeros(0, 4), w).detach()) == 0.0
    with pytest.raises(ValueError, match="frozen"):
        response_ce(torch.randn(2, 4), w.requires_grad_(True), torch.zeros(2, dtype=torch.long))


def test_cif_quantity_by_hand():
    loss = cif_quantity_loss(torch.tensor([3.0, 5.0]), torch.tensor([4, 5]))
    assert torch.isclose(loss, torch.tensor((0.25 + 0.0) / 2))
