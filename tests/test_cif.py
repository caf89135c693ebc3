"""CIF: the vectorised ``cif`` against the per-frame loop ``cif_reference``, by hand, and gradients."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from espnet_blsp.adapters.cif import cif, cif_reference, cif_weights, scale_alphas

KINDS = ["uniform", "tiny", "near_one", "exact", "decimal", "large"]


def _case(seed, B, T, C, kind, dtype=torch.float64):
    """Random frames, lengths, and alphas of one kind; padded alphas/frames hold garbage."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(B, T, C, generator=g, dtype=dtype)
    u = torch.rand(B, T, generator=g, dtype=torch.float64)
    a = {
        "uniform": u,
        "tiny": u * 1e-3,  # hundreds of frames per token
        "near_one": 0.95 + 0.05 * u,  # a token (almost) every frame
        "exact": torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)[(u * 3).long()],  # sums land on the threshold
        "decimal": torch.tensor([0.1, 0.2, 0.3, 0.7], dtype=torch.float64)[(u * 4).long()],  # sums miss it by round-off
        "large": 3.0 * u,  # one frame spans several tokens
    }[kind].to(dtype)
    lengths = torch.randint(0, T + 1, (B,), generator=g)
    pad = torch.arange(T)[None] >= lengths[:, None]
    a = a.masked_fill(pad, 7.0)  # must be ignored
    return h, a, lengths


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**31), B=st.integers(1, 4), T=st.integers(1, 50), C=st.integers(1, 5),
    kind=st.sampled_from(KINDS), tail=st.sampled_from([0.5, 0.2, 0.9]),
)
def test_inference_matches_loop(seed, B, T, C, kind, tail):
    h, a, lengths = _case(seed, B, T, C, kind)
    out, n = cif(h, a, lengths, tail_threshold=tail)
    ref, m = cif_reference(h, a, lengths, tail_threshold=tail)
    assert torch.equal(n, m)
    assert out.shape == ref.shape == (B, int(m.max()), C)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**31), B=st.integers(1, 4), T=st.integers(1, 50), C=st.integers(1, 5),
    kind=st.sampled_from(KINDS), n_max=st.integers(1, 60),
    dtype=st.sampled_from([torch.float32, torch.float64]), threshold=st.sampled_from([1.0, 0.7]),
)
def test_training_fires_exactly_the_target(seed, B, T, C, kind, n_max, dtype, threshold):
    h, a, lengths = _case(seed, B, T, C, kind, dtype)
    target = torch.randint(1, n_max + 1, (B,), generator=torch.Generator().manual_seed(seed)) * (lengths > 0)
    scaled = scale_alphas(a, lengths, target) * threshold
    valid = torch.arange(T)[None] < lengths[:, None]
    assert torch.allclose((scaled * valid).double().sum(1), target.double() * threshold, rtol=1e-5)
    out, n = cif(h, scaled, lengths, threshold=threshold, tail_threshold=0.5 * threshold)
    ref, m = cif_reference(h, scaled, lengths, threshold=threshold, tail_threshold=0.5 * threshold)
    assert torch.equal(n, target) and torch.equal(m, target)  # never n - 1 or n + 1
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scaled", [False, True])
def test_entries_are_coalesced(kind, scaled):
    """cif reads its (token, frame) pairs as CSR bags without sorting them: verify the order."""
    h, a, lengths = _case(3, 4, 200, 1, kind)
    lengths[0] = 200
    if scaled:
        a = scale_alphas(a, lengths, torch.tensor([60, 1, 250, 7]) * (lengths > 0))
    w, rows, cols, counts, N = cif_weights(a, lengths)
    assert rows.numel() > 0
    key = rows * (4 * 200) + cols  # row-major position
    assert bool((key[1:] > key[:-1]).all())  # sorted by token, then frame; no duplicates
    assert int(rows.max()) < 4 * N and bool((w >= 0).all())
    # all the weight is used except a dropped leftover: sum = min(total alpha, count)
    valid = torch.arange(200)[None] < lengths[:, None]
    total = (a * valid).double().sum(1)
    used = torch.zeros(4, dtype=torch.float64).index_add_(0, rows // N, w)
    assert torch.allclose(used, torch.minimum(total, counts.double()), atol=1e-9)


def test_by_hand():
    h = torch.tensor([[[1.0], [2.0], [4.0], [8.0]]])
    a = torch.tensor([[0.6, 0.6, 0.6, 0.3]])  # cumulative 0.6 1.2 1.8 2.1
    out, n = cif(h, a, torch.tensor([4]))
    # token 0 = 0.6*1 + 0.4*2; token 1 = 0.2*2 + 0.6*4 + 0.2*8; leftover 0.1 < 0.5 dropped
    assert n.tolist() == [2]
    assert torch.allclose(out[0, :, 0], torch.tensor([1.4, 4.4]))
    # with a lower tail threshold the leftover 0.1*8 is a third token, not renormalised
    out, n = cif(h, a, torch.tensor([4]), tail_threshold=0.1)
    assert n.tolist() == [3] and torch.allclose(out[0, 2, 0], torch.tensor(0.8))
    # only 2 valid frames: cumulative 0.6 1.2 -> token 0.6*1 + 0.4*2, leftover 0.2*2 dropped
    out, n = cif(h, a, torch.tensor([2]))
    assert n.tolist() == [1] and torch.allclose(out[0, :, 0], torch.tensor([1.4]))


def test_by_hand_exact_and_large_alphas():
    h = torch.tensor([[[1.0], [10.0], [100.0]]])
    # 0.5 + 0.5 lands exactly on 1.0: frame 1 belongs wholly to token 0
    out, n = cif(h, torch.tensor([[0.5, 0.5, 0.5]]), torch.tensor([3]))
    assert n.tolist() == [2] and torch.allclose(out[0, :, 0], torch.tensor([5.5, 50.0]))
    # alpha 2.5 on one frame fires twice and leaves 0.5 (>= 0.5: a third token)
    out, n = cif(h[:, :1], torch.tensor([[2.5]]), torch.tensor([1]))
    assert n.tolist() == [3] and torch.allclose(out[0, :, 0], torch.tensor([1.0, 1.0, 0.5]))


def test_scaled_alphas_give_n_tokens_despite_round_off():
    # 0.1 is not a binary fraction: added up one by one, ten of them make 0.9999999999999999
    a = torch.full((1, 10), 0.1, dtype=torch.float64)
    assert torch.cumsum(a, 1)[0, -1].item() < 1.0
    out, n = cif(torch.ones(1, 10, 1, dtype=torch.float64), a, torch.tensor([10]))
    assert n.tolist() == [1] and torch.allclose(out, torch.ones(1, 1, 1, dtype=torch.float64))
    # float32 alphas scaled to 7 tokens over 1001 frames
    a = scale_alphas(torch.rand(1, 1001), torch.tensor([1001]), torch.tensor([7]))
    assert cif(torch.randn(1, 1001, 3), a, torch.tensor([1001]))[1].tolist() == [7]


def test_empty_inputs():
    out, n = cif(torch.randn(2, 5, 3), torch.full((2, 5), 0.08), torch.tensor([5, 0]))
    assert n.tolist() == [0, 0] and out.shape == (2, 0, 3)  # 5 * 0.08 = 0.4 < 0.5: no token
    out, n = cif(torch.randn(2, 5, 3), torch.full((2, 5), 0.3), torch.tensor([5, 0]))
    assert n.tolist() == [2, 0] and out.shape == (2, 2, 3) and out[1].abs().sum() == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="lengths"):
        cif(torch.randn(1, 4, 2), torch.rand(1, 4), torch.tensor([5]))
    with pytest.raises(ValueError, match="tail_threshold"):
        cif(torch.randn(1, 4, 2), torch.rand(1, 4), torch.tensor([4]), tail_threshold=0.0)
    with pytest.raises(ValueError, match="alphas"):
        cif(torch.randn(1, 4, 2), torch.rand(1, 3), torch.tensor([3]))


def test_gradients_flow_and_match_finite_differences():
    torch.manual_seed(0)
    h = torch.randn(2, 12, 3, dtype=torch.float64, requires_grad=True)
    a = (0.1 + 0.8 * torch.rand(2, 12, dtype=torch.float64)).requires_grad_()
    lengths, target = torch.tensor([12, 9]), torch.tensor([5, 3])
    assert torch.autograd.gradcheck(lambda h, a: cif(h, a, lengths)[0], (h, a))
    assert torch.autograd.gradcheck(lambda h, a: cif(h, scale_alphas(a, lengths, target), lengths)[0], (h, a))
    out, _ = cif(h, scale_alphas(a, lengths, target), lengths)
    out.square().sum().backward()
    assert h.grad[0].abs().sum() > 0 and a.grad[0].abs().sum() > 0
    assert h.grad[1, 9:].abs().sum() == 0 and a.grad[1, 9:].abs().sum() == 0  # padding untouched


def test_half_precision_is_summed_in_float32():
    h = torch.randn(2, 30, 4)
    a = torch.rand(2, 30)
    lengths = torch.tensor([30, 20])
    out, n = cif(h.bfloat16(), a, lengths)
    ref, m = cif(h.bfloat16().float(), a, lengths)
    assert out.dtype == torch.bfloat16 and torch.equal(n, m)
    assert torch.allclose(out.float(), ref, atol=0.05)
