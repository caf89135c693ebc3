"""Audio loading for wav.scp entries: files, Kaldi pipes and ark offsets."""

import io
import subprocess

import numpy as np


class AudioError(ValueError):
    """Missing, corrupt or empty audio; the message names the utterance and the path."""


def load_wav(spec: str, target_sr: int = 16000, utt_id: str = "?") -> np.ndarray:
    """A wav.scp value -> float32 mono samples at ``target_sr``."""
    import soundfile

    spec = spec.strip()
    try:
        if spec.endswith("|"):
            proc = subprocess.run(spec[:-1], shell=True, capture_output=True, check=True)
            data, sr = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
        elif ".ark:" in spec:
            import kaldiio

            sr, data = kaldiio.load_mat(spec)
            data = np.asarray(data, dtype=np.float32).reshape(len(data), -1)
            if np.abs(data).max(initial=0) > 1.0:
                data = data / 32768.0
        else:
            data, sr = soundfile.read(spec, dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise AudioError(f"utterance {utt_id}: audio file not found: {spec}") from None
    except subprocess.CalledProcessError as e:
        raise AudioError(f"utterance {utt_id}: command failed: {spec} ({e.stderr.decode(errors='replace')[:200]})") from None
    except Exception as e:  # noqa: BLE001 - soundfile raises several types for bad files
        raise AudioError(f"utterance {utt_id}: cannot decode audio {spec}: {e}") from None
    wav = data[:, 0]
    if wav.size == 0:
        raise AudioError(f"utterance {utt_id}: empty audio {spec}")
    if sr != target_sr:
        import torch
        import torchaudio.functional as AF

        wav = AF.resample(torch.from_numpy(np.ascontiguousarray(wav)), sr, target_sr).numpy()
    return np.ascontiguousarray(wav, dtype=np.float32)
