import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet_blsp.adapters.cif import cif, cif_reference, scale_alphas


def _case(seed, B, T, C, kind):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    if kind == "uniform":
        a = torch.rand(B, T, generator=g, dtype=torch.float64)
    elif kind == "tiny":
        a = torch.rand(B, T, generator=g, dtype=torch.float64) * 0.05
    elif kind == "near_one":
        a = 0.9 + 0.1 * torch.rand(B, T, generator=g, dtype=torch.float64)
    else:  # exactly on the threshold
        a = torch.full((B, T), 0.5, dtype=torch.float64)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    return h, a, lengths


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000), B=st.integers(1, 4), T=st.integers(1, 60), C=st.integers(1, 6),
    kind=st.sampled_from(["uniform", "tiny", "near_one", "exact"]),
)
def test_cif_matches_loop_inference(seed, B, T, C, kind):
    h, a, lengths = _case(seed, B, T, C, kind)
    out, n = cif(h, a, lengths)
    ref, m = cif_reference(h, a, lengths)
    assert torch.equal(n, m)
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000), B=st.integers(1, 4), T=st.integers(1, 60), C=st.integers(1, 6),
    kind=st.sampled_from(["uniform", "tiny", "near_one", "exact"]), n_max=st.integers(1, 12),
)
def test_cif_matches_loop_training(seed, B, T, C, kind, n_max):
    h, a, lengths = _case(seed, B, T, C, kind)
    target = torch.randint(1, n_max + 1, (B,), generator=torch.Generator().manual_seed(seed))
    out, n = cif(h, scale_alphas(a, lengths, target), lengths, target_lengths=target)
    ref, m = cif_reference(h, a, lengths, target_lengths=target)
    assert torch.equal(n, target) and torch.equal(m, target)
    assert torch.allclose(out, ref, atol=1e-5)


def test_cif_by_hand():
    h = torch.tensor([[[1.0], [2.0], [4.0], [8.0]]])
    a = torch.tensor([[0.6, 0.6, 0.6, 0.3]])
    out, n = cif(h, a, torch.tensor([4]))
    # token 0: 0.6*1 + 0.4*2; token 1: 0.2*2 + 0.6*4 + 0.2*8; tail 0.1*8 < 0.5 dropped
    assert n.tolist() == [2]
    assert torch.allclose(out[0, :, 0], torch.tensor([1.4, 4.4]))
    out, n = cif(h, a, torch.tensor([4]), tail_threshold=0.05)
    assert n.tolist() == [3] and torch.allclose(out[0, 2, 0], torch.tensor(0.8))


def test_cif_ignores_padding_and_has_gradients():
    h = torch.randn(2, 10, 3, requires_grad=True)
    a = torch.rand(2, 10, requires_grad=True)
    lengths = torch.tensor([10, 6])
    out, n = cif(h, scale_alphas(a, lengths, torch.tensor([4, 3])), lengths, target_lengths=torch.tensor([4, 3]))
    out.sum().backward()
    assert h.grad[1, 6:].abs().sum() == 0 and a.grad[1, 6:].abs().sum() == 0
    assert h.grad[0].abs().sum() > 0 and a.grad.abs().sum() > 0
