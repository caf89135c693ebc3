"""Whisper's log-mel features on the true length of a clip (never padded to 30 s).

Usage::

    feats = WhisperLogMel(n_mels=80)(wav)   # wav: (num_samples,) float at 16 kHz -> (T, 80)
    assert feats.shape[0] == num_frames(len(wav))
"""

import numpy as np
import torch

SAMPLING_RATE = 16000
HOP_LENGTH = 160  # 10 ms
N_FFT = 400  # 25 ms window


def num_frames(num_samples: int) -> int:
    """Mel frames of a clip: one per 10 ms hop, ``num_samples // 160``.

    The centred STFT yields ``1 + num_samples // 160`` frames and Whisper drops the
    last one, as ``WhisperFeatureExtractor`` does (3000 frames for 30 s).
    """
    return num_samples // HOP_LENGTH


class WhisperLogMel:
    """Whisper's log-mel front end on the clip itself.

    Shapes: wav (num_samples,) float in [-1, 1] at 16 kHz -> (T, n_mels) float32,
    T = num_samples // 160.

    The arithmetic is that of transformers' ``WhisperFeatureExtractor``: centred STFT
    (n_fft 400, hop 160, periodic Hann, reflect padding), power spectrum, Slaney mel
    filters up to 8 kHz, ``log10(max(., 1e-10))``, clamp to ``max - 8``, ``(x + 4) / 4``.
    It differs from the extractor's 30 s output in two places only:

    * the last one or two frames: their 400-sample window reaches past the end of the
      clip, where the centred STFT reflects the clip's own samples while the extractor
      sees its zero padding;
    * the dynamic-range clamp uses the maximum over the clip's own frames, where the
      extractor's maximum also covers its padding frames (silence, so the two agree
      unless the loudest frame is one of those boundary frames).
    """

    def __init__(self, n_mels: int = 80, sampling_rate: int = SAMPLING_RATE):
        from transformers.audio_utils import mel_filter_bank

        if sampling_rate != SAMPLING_RATE:
            raise ValueError(f"Whisper features need {SAMPLING_RATE} Hz audio; got sampling_rate={sampling_rate}")
        self.n_mels = n_mels
        self.sampling_rate = sampling_rate
        filters = mel_filter_bank(
            num_frequency_bins=1 + N_FFT // 2, num_mel_filters=n_mels, min_frequency=0.0,
            max_frequency=8000.0, sampling_rate=sampling_rate, norm="slaney", mel_scale="slaney",
        )  # (N_FFT/2 + 1, n_mels)
        self.filters = torch.from_numpy(np.ascontiguousarray(filters.T)).float()  # (n_mels, F)
        self.window = torch.hann_window(N_FFT)

    def __call__(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav)
        if wav.ndim != 1 or not np.issubdtype(wav.dtype, np.floating):
            raise ValueError(
                f"expected a mono float waveform (num_samples,), got a {wav.dtype} array of shape {wav.shape}"
            )
        if wav.size < N_FFT:
            raise ValueError(f"clip of {wav.size} samples is shorter than one {N_FFT}-sample analysis window")
        x = torch.from_numpy(wav.astype(np.float32, copy=False))
        spec = torch.stft(x, N_FFT, HOP_LENGTH, window=self.window, return_complex=True)  # (F, T + 1)
        power = spec[:, :-1].abs() ** 2  # (F, T): Whisper drops the last frame
        log_mel = (self.filters @ power).clamp_min(1e-10).log10()  # (n_mels, T)
        log_mel = torch.maximum(log_mel, log_mel.max() - 8.0)
        return ((log_mel + 4.0) / 4.0).T.contiguous().numpy()  # (T, n_mels)
