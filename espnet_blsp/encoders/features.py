"""Whisper log-mel features on the true length (never padded to 30 s)."""

import numpy as np

HOP_LENGTH = 160
N_FFT = 400


def num_frames(num_samples: int) -> int:
    """Frames of a clip: one per 10 ms hop (Whisper drops the STFT's last frame)."""
    return num_samples // HOP_LENGTH


class WhisperLogMel:
    """Whisper's log-mel front end: |STFT|^2 -> mel -> log10 -> clamp(max - 8) -> (x + 4) / 4.

    Computed with transformers' ``WhisperFeatureExtractor`` arithmetic on the clip
    itself: ``(T, n_mels)`` with ``T = len(wav) // 160``. The dynamic-range clamp uses
    the clip's own maximum, as Whisper's padded path does for any non-silent clip.
    """

    def __init__(self, n_mels: int = 80, sampling_rate: int = 16000):
        from transformers import WhisperFeatureExtractor

        self.extractor = WhisperFeatureExtractor(
            feature_size=n_mels, sampling_rate=sampling_rate, hop_length=HOP_LENGTH, n_fft=N_FFT
        )
        self.n_mels = n_mels

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or wav.size < N_FFT:
            raise ValueError(f"expected a mono clip of at least {N_FFT} samples, got shape {wav.shape}")
        feats = self.extractor._np_extract_fbank_features(wav[None], device="cpu")  # (1, n_mels, T+1)
        return np.ascontiguousarray(feats[0, :, : num_frames(wav.size)].T, dtype=np.float32)  # (T, n_mels)
