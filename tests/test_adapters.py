"""Adapters: forward/backward, shapes with the arithmetic visible, batch and padding invariance."""

import pytest
import torch

from espnet_blsp.adapters import ADAPTERS, CFormerAdapter, CNNAdapter, build_adapter
from espnet_blsp.adapters.cif import cif_reference

D_IN, D_OUT = 16, 24


def _make(name: str, **kw):
    torch.manual_seed(0)
    if name == "cnn":
        return CNNAdapter(D_IN, D_OUT, bottleneck_dim=8, **kw)
    conf = dict(attention_heads=4, linear_units=32, num_pre_layers=2, num_post_layers=2, dropout_rate=0.0)
    return CFormerAdapter(D_IN, D_OUT, **{**conf, **kw})


def _inputs():
    torch.manual_seed(1)
    x = torch.randn(3, 41, D_IN)
    return x, torch.tensor([41, 30, 9]), torch.tensor([5, 4, 2])


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_forward_backward_and_shapes(name):
    ad = _make(name).train()
    x, x_lens, targets = _inputs()
    y, y_lens, aux = ad(x, x_lens, targets)
    T = 41
    if name == "cnn":
        # each layer: L -> floor((L + 2*2 - 5) / 2) + 1 = (L - 1)//2 + 1
        assert y.shape[1] == (((T - 1) // 2 + 1 - 1) // 2 + 1 - 1) // 2 + 1 == 6
        assert y_lens.tolist() == [6, 4, 2]  # 41->21->11->6, 30->15->8->4, 9->5->3->2
        assert torch.equal(y_lens, ad.output_lengths(x_lens)) and aux == {}
    else:
        assert torch.equal(y_lens, targets) and y.shape[1] == int(targets.max()) == 5
        assert aux["alpha_sum"].shape == (3,)
    assert y.shape == (3, y.shape[1], D_OUT) and ad.output_size() == D_OUT
    pad = torch.arange(y.shape[1])[None] >= y_lens[:, None]
    assert y[pad].abs().sum() == 0  # padded outputs are zero
    loss = y.square().sum() + sum(v.sum() for v in aux.values())
    loss.backward()
    for n, p in ad.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize("name", sorted(ADAPTERS))
@pytest.mark.parametrize("with_targets", [True, False])
def test_batched_equals_single(name, with_targets):
    ad = _make(name).eval()
    x, x_lens, targets = _inputs()
    x[1, 30:] = 1e3 * torch.randn(11, D_IN)  # garbage in the padding
    t = targets if with_targets else None
    with torch.no_grad():
        y, y_lens, aux = ad(x, x_lens, t)
        for b in range(3):
            L = int(x_lens[b])
            yb, lb, auxb = ad(x[b : b + 1, :L], x_lens[b : b + 1], None if t is None else t[b : b + 1])
            assert int(lb) == int(y_lens[b])
            assert torch.allclose(yb[0, : int(lb)], y[b, : int(lb)], atol=1e-5)
            for k in aux:
                assert torch.allclose(auxb[k], aux[k][b : b + 1], atol=1e-5)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_padding_never_changes_output(name):
    ad = _make(name).eval()
    x = torch.randn(2, 20, D_IN)
    lens, targets = torch.tensor([20, 12]), torch.tensor([3, 2])
    y1, l1, a1 = ad(x, lens, targets)
    x2 = x.clone()
    x2[1, 12:] = 1e4 * torch.randn(8, D_IN)
    x2 = torch.cat([x2, 1e4 * torch.randn(2, 7, D_IN)], dim=1)  # and more padding frames
    y2, l2, a2 = ad(x2, lens, targets)
    N = y1.shape[1]  # more input padding may mean more (zero) output padding
    assert torch.equal(l1, l2) and torch.allclose(y1, y2[:, :N], atol=1e-5) and y2[:, N:].abs().sum() == 0
    for k in a1:
        assert torch.allclose(a1[k], a2[k], atol=1e-5)


def test_cformer_counts_equal_targets_in_training():
    ad = _make("cformer", dropout_rate=0.1).train()
    torch.manual_seed(2)
    for _ in range(5):
        x = torch.randn(4, 50, D_IN)
        x_lens = torch.tensor([50, 37, 12, 3])
        targets = torch.tensor([20, 1, 12, 9])  # more tokens than frames is allowed
        y, y_lens, aux = ad(x, x_lens, targets)
        assert torch.equal(y_lens, targets) and y.shape[1] == 20


def _spy_cif(monkeypatch):
    """Record the arguments of each cif call inside the CFormer."""
    import espnet_blsp.adapters.cformer as cformer_module

    calls = []
    real = cformer_module.cif

    def spy(hidden, alphas, lengths, threshold, tail_threshold):
        calls.append((alphas.detach().clone(), lengths.clone(), threshold, tail_threshold))
        return real(hidden, alphas, lengths, threshold, tail_threshold)

    monkeypatch.setattr(cformer_module, "cif", spy)
    return calls


def _token_weights(alphas, lengths, threshold, tail_threshold):
    """Total weight of each token, from the per-frame reference loop: CIF of an all-ones feature."""
    ones = torch.ones(*alphas.shape, 1, dtype=torch.float64)
    w, n = cif_reference(ones, alphas.double(), lengths, threshold, tail_threshold)
    return w[..., 0], n  # (B, N), (B,)


def test_cformer_inference_fires_round_alpha_sum_tokens_of_full_weight(monkeypatch):
    """Default inference: the alphas are rescaled to sum to n = round(sum alpha), so n tokens fire,
    each (the last included) of total weight = threshold, as in training (official code)."""
    calls = _spy_cif(monkeypatch)
    x, x_lens = torch.randn(4, 30, D_IN, generator=torch.Generator().manual_seed(3)), torch.tensor([30, 21, 10, 3])
    for threshold in (1.0, 0.8):
        ad = _make("cformer", threshold=threshold, tail_threshold=0.5 * threshold).eval()
        calls.clear()
        with torch.no_grad():
            y, y_lens, aux = ad(x, x_lens)
        n = torch.round(aux["alpha_sum"]).long().clamp_min(1)  # every clip here has frames
        assert torch.equal(y_lens, n) and y.shape == (4, int(n.max()), D_OUT)
        (alphas, lengths, th, tail), = calls
        w, counts = _token_weights(alphas, lengths, th, tail)
        assert torch.equal(counts, n)
        for b, k in enumerate(n.tolist()):
            assert torch.allclose(w[b, :k], torch.full((k,), threshold, dtype=torch.float64), atol=1e-5), w[b]
            assert w[b, k - 1] == pytest.approx(threshold, abs=1e-5)  # the last token too


def test_cformer_inference_without_rescale_fires_on_threshold(monkeypatch):
    """inference_rescale=False (the old behaviour, kept for comparison): the raw alphas fire at
    the threshold and a leftover >= tail_threshold is a last token of weight in [0.5, 1)."""
    calls = _spy_cif(monkeypatch)
    ad = _make("cformer", inference_rescale=False).eval()
    with torch.no_grad():
        y, y_lens, aux = ad(torch.randn(2, 30, D_IN), torch.tensor([30, 10]))
    fired = torch.floor(aux["alpha_sum"].double() + 1e-6)
    tail = aux["alpha_sum"].double() - fired
    assert torch.equal(y_lens, (fired + (tail >= 0.5 - 1e-6)).long())
    assert y.shape == (2, int(y_lens.max()), D_OUT)
    w, counts = _token_weights(*calls[0])
    last = w[torch.arange(2), counts - 1]
    assert torch.allclose(last, torch.where(tail >= 0.5 - 1e-6, tail, torch.ones_like(tail)), atol=1e-5)


def test_cformer_few_or_zero_tokens_at_inference():
    ad = _make("cformer").eval()
    with torch.no_grad():
        ad.pre.norm.bias[-1] = -30.0  # alpha = sigmoid(~-30): round(sum) = 0
        ad.pre.norm.weight[-1] = 0.0
        y, y_lens, _ = ad(torch.randn(2, 9, D_IN), torch.tensor([9, 4]))
        assert y_lens.tolist() == [1, 1] and torch.isfinite(y).all()  # a clip with frames: >= 1 token
        y, y_lens, _ = ad(torch.randn(2, 9, D_IN), torch.tensor([9, 0]))  # an empty utterance: none
        assert y_lens.tolist() == [1, 0] and not y[1].any()
        ad.pre.norm.bias[-1] = 0.0  # alpha = 0.5 everywhere: 9 frames -> round(4.5) = 4 (half to even), 4 -> 2
        y, y_lens, _ = ad(torch.randn(2, 9, D_IN), torch.tensor([9, 4]))
        assert y_lens.tolist() == [4, 2]
    ad.inference_rescale = False
    with torch.no_grad():
        ad.pre.norm.bias[-1] = -30.0  # raw alphas: nothing fires
        y, y_lens, _ = ad(torch.randn(2, 9, D_IN), torch.tensor([9, 4]))
        assert y_lens.tolist() == [0, 0] and y.shape == (2, 0, D_OUT)
        ad.pre.norm.bias[-1] = 0.0  # 9 frames -> 4.5 -> 4 fired + a 0.5 tail = 5 tokens, 4 -> 2
        y, y_lens, _ = ad(torch.randn(2, 9, D_IN), torch.tensor([9, 4]))
        assert y_lens.tolist() == [5, 2] and torch.isfinite(y).all()
        ad.pre.norm.bias[-1] = -30.0
        y, y_lens, _ = ad(torch.randn(2, 9, D_IN), torch.tensor([9, 0]))  # an empty utterance
        assert y_lens.tolist() == [0, 0]


def test_cformer_rejects_tokens_without_frames():
    ad = _make("cformer")
    with pytest.raises(ValueError, match="batch index"):
        ad(torch.randn(2, 5, D_IN), torch.tensor([5, 0]), torch.tensor([2, 3]))


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_wrong_width_is_a_clear_error(name):
    with pytest.raises(ValueError, match=f"\\(B, T, {D_IN}\\)"):
        _make(name)(torch.randn(1, 10, D_IN + 1), torch.tensor([10]))


def test_registry():
    assert build_adapter("cnn", input_size=4, output_size=6, bottleneck_dim=2).output_size() == 6
    with pytest.raises(ValueError, match="cformer, cnn"):
        build_adapter("transformer")


def test_cformer_dropout_is_zero_by_default_and_in_every_config():
    """The blocks are shaped like Whisper's encoder layers, which use no dropout (BLSP-KD Sec. 4.1)."""
    from pathlib import Path

    import yaml

    ad = CFormerAdapter(D_IN, D_OUT, attention_heads=4, num_pre_layers=1, num_post_layers=1)
    assert all(m.p == 0.0 for m in ad.modules() if isinstance(m, torch.nn.Dropout))
    conf_dir = Path(__file__).resolve().parents[1] / "conf"
    configs = [yaml.safe_load(p.read_text()) | {"path": p.name} for p in sorted(conf_dir.rglob("train_*.yaml"))]
    cformer = [c for c in configs if c.get("speech_adapter") == "cformer"]
    assert len(cformer) >= 8  # kd2..kd7, mini, tuning
    for c in cformer:
        assert c["speech_adapter_conf"].get("dropout_rate", 0.0) == 0.0, c["path"]
