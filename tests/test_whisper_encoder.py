import numpy as np
import pytest
import torch

from espnet_blsp.encoders.features import WhisperLogMel, num_frames
from espnet_blsp.encoders.whisper import WhisperSpeechEncoder
from espnet_blsp.testing.tiny import TINY_WHISPER_CONFIG


def test_equals_hf_encoder_at_30s(tiny_whisper):
    enc = WhisperSpeechEncoder(tiny_whisper)
    x = torch.randn(1, 3000, 80)
    ours, lens = enc(x, torch.tensor([3000]))
    ref = enc.encoder(x.transpose(1, 2)).last_hidden_state
    assert lens.tolist() == [1500]
    assert torch.allclose(ours, ref, atol=1e-4)


def test_batched_equals_single():
    torch.manual_seed(0)
    enc = WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG)
    x = torch.randn(3, 801, 80)
    lens = torch.tensor([801, 400, 33])
    out, out_lens = enc(x, lens)
    assert out_lens.tolist() == [401, 200, 17]  # ceil(T / 2)
    for b in range(3):
        single, _ = enc(x[b : b + 1, : lens[b]], lens[b : b + 1])
        rel = (out[b, : out_lens[b]] - single[0]).norm() / single.norm()
        assert rel <= 1e-4


def test_rejects_over_30s_and_bad_path(tmp_path):
    enc = WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG)
    with pytest.raises(ValueError, match="30 s"):
        enc(torch.randn(1, 3001, 80), torch.tensor([3001]))
    with pytest.raises(FileNotFoundError, match="missing"):
        WhisperSpeechEncoder(str(tmp_path / "missing"))


def test_frozen_stays_eval():
    enc = WhisperSpeechEncoder(config={**TINY_WHISPER_CONFIG, "dropout": 0.5})
    enc.train()
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    trainable = WhisperSpeechEncoder(config=TINY_WHISPER_CONFIG, freeze=False)
    # only the fixed sinusoidal positions stay frozen, as in HF Whisper
    assert all(p.requires_grad for n, p in trainable.named_parameters() if "embed_positions" not in n)


def test_logmel_matches_padded_extractor():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(16000 * 5)).astype(np.float32)
    ours = WhisperLogMel(80)(wav)
    assert ours.shape == (num_frames(wav.size), 80) == (500, 80)
    ref = WhisperFeatureExtractor(feature_size=80)(wav, sampling_rate=16000, return_tensors="np").input_features[0].T
    # The last frame's STFT window reaches into the padding (reflect vs zeros), so the
    # comparison stops one frame early.
    assert np.allclose(ours[:-1], ref[:499], atol=1e-4)
