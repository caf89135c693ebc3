"""Whisper encoder on the true length, and log-mel features, against transformers' own."""

import json

import numpy as np
import pytest
import torch

from espnet_blsp.encoders.features import WhisperLogMel, num_frames
from espnet_blsp.encoders.whisper import WhisperSpeechEncoder
from espnet_blsp.testing.tiny_whisper import TINY_WHISPER_CONFIG, make_tiny_whisper


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> str:
    return make_tiny_whisper(str(tmp_path_factory.mktemp("tiny_whisper")))


def test_loads_encoder_weights_by_path(tiny_dir, tmp_path):
    from transformers import WhisperForConditionalGeneration

    enc = WhisperSpeechEncoder(tiny_dir)
    full = WhisperForConditionalGeneration.from_pretrained(tiny_dir)
    ref = full.model.encoder.state_dict()
    ours = enc.encoder.state_dict()
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ref)
    assert (enc.output_size(), enc.n_mels, enc.num_heads, enc.ffn_dim, enc.num_layers) == (64, 80, 4, 128, 2)
    # a WhisperModel checkpoint ("encoder." prefix) loads too
    full.model.save_pretrained(str(tmp_path / "whisper_model"))
    again = WhisperSpeechEncoder(str(tmp_path / "whisper_model")).encoder.state_dict()
    assert all(torch.equal(again[k], ref[k]) for k in ref)


def test_equals_hf_encoder_at_30s(tiny_dir):
    enc = WhisperSpeechEncoder(tiny_dir)
    torch.manual_seed(0)
    x = torch.randn(2, 3000, 80)
    with torch.no_grad():
        ours, lens = enc(x, torch.tensor([3000, 3000]))
        ref = enc.encoder(x.transpose(1, 2)).last_hidden_state  # HF's own 30 s path
    assert lens.tolist() == [1500, 1500] and ours.shape == ref.shape == (2, 1500, 64)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_batched_equals_single():
    torch.manual_seed(0)
    enc = WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG)
    lens = torch.tensor([801, 400, 33, 2])
    x = torch.randn(4, 801, 80)
    for b, L in enumerate(lens.tolist()):
        x[b, L:] = 1e4 * torch.randn(801 - L, 80)  # garbage in the padding must not leak
    with torch.no_grad():
        out, out_lens = enc(x, lens)
        assert out_lens.tolist() == [401, 200, 17, 1]  # ceil(T / 2)
        assert out.shape == (4, 401, 64)
        for b, L in enumerate(lens.tolist()):
            single, single_lens = enc(x[b : b + 1, :L], lens[b : b + 1])
            n = int(out_lens[b])
            assert single.shape[1] == n == int(single_lens[0])
            rel = (out[b, :n] - single[0]).norm() / single[0].norm()
            assert rel <= 1e-4, (b, rel)
            assert out[b, n:].abs().sum() == 0


def test_rejects_bad_inputs_and_paths(tmp_path):
    enc = WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG)
    with pytest.raises(ValueError, match=r"exceeds 30 s \(3000 frames\)"):
        enc(torch.randn(1, 3001, 80), torch.tensor([3001]))
    with pytest.raises(ValueError, match="n_mels|80"):
        enc(torch.randn(1, 100, 128), torch.tensor([100]))
    with pytest.raises(ValueError, match="feats_lens"):
        enc(torch.randn(2, 100, 80), torch.tensor([100, 0]))
    missing = str(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=missing):
        WhisperSpeechEncoder(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        WhisperSpeechEncoder(str(tmp_path / "empty"))
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="not a Whisper"):
        WhisperSpeechEncoder(str(tmp_path / "llama"))
    with pytest.raises(ValueError, match="exactly one"):
        WhisperSpeechEncoder()


def test_frozen_stays_eval_and_unfrozen_trains():
    enc = WhisperSpeechEncoder(config={**TINY_WHISPER_CONFIG, "dropout": 0.5})
    enc.train()
    assert not enc.training and not enc.encoder.training
    assert not any(p.requires_grad for p in enc.parameters())
    x, lens = torch.randn(2, 50, 80), torch.tensor([50, 31])
    with torch.no_grad():
        assert torch.equal(enc(x, lens)[0], enc(x, lens)[0])  # no dropout

    trainable = WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG, freeze=False).train()
    assert trainable.training
    # only the fixed sinusoidal positions stay frozen, as in HF Whisper
    assert all(p.requires_grad for n, p in trainable.named_parameters() if "embed_positions" not in n)
    hs, hs_lens = trainable(x, lens)
    hs.square().sum().backward()
    assert trainable.encoder.conv1.weight.grad.abs().sum() > 0
    assert trainable.encoder.layers[-1].fc2.weight.grad.abs().sum() > 0


def _extractor_frames(wav: np.ndarray) -> np.ndarray:
    from transformers import WhisperFeatureExtractor

    ref = WhisperFeatureExtractor(feature_size=80)(wav, sampling_rate=16000, return_tensors="np")
    return ref.input_features[0].T  # (3000, 80): padded to 30 s


@pytest.mark.parametrize("num_samples", [16000 * 5, 16000 * 5 + 100])
def test_logmel_matches_padded_extractor(num_samples):
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(num_samples)).astype(np.float32)
    ours = WhisperLogMel(80)(wav)
    T = num_samples // 160
    assert ours.shape == (num_frames(num_samples), 80) == (T, 80) and ours.dtype == np.float32
    ref = _extractor_frames(wav)
    # Frame t's window covers samples [160 t - 200, 160 t + 200): the frames whose window
    # ends past the clip see reflected samples here but zero padding in the extractor.
    same = (num_samples - 200) // 160 + 1  # frames whose window fits in the clip
    assert T - same <= 2
    np.testing.assert_allclose(ours[:same], ref[:same], atol=1e-4)
    assert np.abs(ours[same:] - ref[same:T]).max() > 1e-3 if same < T else True


def test_logmel_clamp_uses_the_clip_maximum():
    rng = np.random.default_rng(1)
    wav = (0.5 * rng.standard_normal(16000 * 3)).astype(np.float32)
    wav[16000:] *= 1e-6  # -120 dB after the first second: the max - 8 clamp is active
    ours = WhisperLogMel(80)(wav)
    ref = _extractor_frames(wav)
    assert np.isclose(ours.min(), ours.max() - 2.0, atol=1e-5)  # (x + 4) / 4 turns 8 into 2
    np.testing.assert_allclose(ours[:298], ref[:298], atol=1e-4)


def test_logmel_rejects_bad_audio():
    with pytest.raises(ValueError, match="float"):
        WhisperLogMel()(np.zeros(16000, dtype=np.int16))
    with pytest.raises(ValueError, match="shorter"):
        WhisperLogMel()(np.zeros(300, dtype=np.float32))
    with pytest.raises(ValueError, match="16000"):
        WhisperLogMel(sampling_rate=8000)
