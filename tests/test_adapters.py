import pytest
import torch

from espnet_blsp.adapters import ADAPTERS, CFormerAdapter, CNNAdapter, build_adapter


def _make(name):
    torch.manual_seed(0)
    if name == "cnn":
        return CNNAdapter(16, 24, bottleneck_dim=8)
    return CFormerAdapter(16, 24, attention_heads=4, linear_units=32, num_pre_layers=1, num_post_layers=1, dropout_rate=0.0)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_forward_backward_shapes_and_batch_invariance(name):
    ad = _make(name).eval()
    x = torch.randn(3, 41, 16)
    x_lens = torch.tensor([41, 30, 9])
    targets = torch.tensor([5, 4, 2])
    y, y_lens, aux = ad(x, x_lens, targets)
    if name == "cnn":
        T = 41
        assert y.shape[1] == (((T - 1) // 2 + 1 - 1) // 2 + 1 - 1) // 2 + 1  # 41 -> 21 -> 11 -> 6
        assert y_lens.tolist() == [6, 4, 2]  # 30 -> 15 -> 8 -> 4; 9 -> 5 -> 3 -> 2
    else:
        assert torch.equal(y_lens, targets) and y.shape[1] == 5
        assert aux["alpha_sum"].shape == (3,)
    assert y.shape[2] == 24
    for b in range(3):
        yb, lb, _ = ad(x[b : b + 1, : x_lens[b]], x_lens[b : b + 1], targets[b : b + 1])
        assert int(lb) == int(y_lens[b])
        assert torch.allclose(yb[0, :lb], y[b, : y_lens[b]], atol=1e-5)
    ad.train()
    y, y_lens, aux = ad(x, x_lens, targets)
    (y.sum() + sum(v.sum() for v in aux.values())).backward()
    assert all(p.grad is not None for p in ad.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_padding_never_changes_output(name):
    ad = _make(name).eval()
    x = torch.randn(2, 20, 16)
    lens = torch.tensor([20, 12])
    y1, l1, _ = ad(x, lens, torch.tensor([3, 2]))
    x2 = x.clone()
    x2[1, 12:] = 1e3 * torch.randn(8, 16)
    y2, l2, _ = ad(x2, lens, torch.tensor([3, 2]))
    assert torch.equal(l1, l2) and torch.allclose(y1, y2, atol=1e-5)


def test_cformer_inference_fires_on_threshold():
    ad = _make("cformer").eval()
    y, y_lens, aux = ad(torch.randn(2, 30, 16), torch.tensor([30, 10]))
    expected = torch.floor(aux["alpha_sum"] + 1e-6)
    tail = aux["alpha_sum"] - expected
    assert torch.equal(y_lens, (expected + (tail >= 0.5 - 1e-6)).long())


def test_unknown_adapter_raises():
    with pytest.raises(ValueError, match="cformer"):
        build_adapter("transformer")
