"""Audio loading for wav.scp entries: files, Kaldi pipe commands and ark offsets.

    load_wav("/data/a.flac", 16000, utt_id="spk1-a")        # file (wav/flac/mp3/ogg/opus/sph)
    load_wav("sph2pipe -f wav -p /data/a.sph |", 16000)     # command writing WAV to stdout
    load_wav("/dump/wav.ark:1234", 16000)                   # kaldiio ark offset
    for utt, wav in iter_kaldi_audio("data/test_clean"): ...   # honours ``segments``

Every loader returns float32 mono samples in [-1, 1] at ``target_sr``: the first
channel of multi-channel audio, resampled with ``torchaudio.functional.resample``.
Missing, corrupt or empty audio raises ``AudioError`` naming the utterance and the path.
"""

import io
import logging
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from espnet_blsp.data.kaldi_dir import read_kv, read_segments


class AudioError(ValueError):
    """Missing, corrupt or empty audio; the message names the utterance and the path."""


def _read_file(path: str, utt_id: str) -> Tuple[np.ndarray, int]:
    """(samples, channels) float32 and the rate; soundfile first, then torchaudio (for the
    formats libsndfile lacks). The error names the file and what is wrong with it; a
    torchaudio that cannot run here (no backend, e.g. torchcodec missing) is left out of it."""
    import soundfile

    if not Path(path).is_file():
        raise AudioError(f"utterance {utt_id}: audio file not found: {path}")
    if Path(path).stat().st_size == 0:
        raise AudioError(f"utterance {utt_id}: empty audio file (0 bytes): {path}")
    try:
        data, sr = soundfile.read(path, dtype="float32", always_2d=True)  # (S, C)
        return data, sr
    except Exception as sf_error:  # noqa: BLE001 - libsndfile reports bad files several ways
        reason = _file_reason(sf_error, path)
        try:
            import torchaudio

            wav, sr = torchaudio.load(path)  # (C, S) float32
            return wav.numpy().T, sr
        except Exception as ta_error:  # noqa: BLE001
            if not _backend_missing(ta_error):
                reason += f"; torchaudio: {_file_reason(ta_error, path)}"
        raise AudioError(f"utterance {utt_id}: cannot decode audio {path}: {reason}") from None


def _file_reason(error: Exception, path: str) -> str:
    """The first line of a decoder's error, without the path it repeats."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text.replace(f"Error opening {path!r}: ", "").replace(f"Error opening '{path}': ", "").strip()


def _backend_missing(error: Exception) -> bool:
    """True when torchaudio failed for want of a decoding backend, not because of the file."""
    text = str(error).lower()
    return isinstance(error, (ImportError, RuntimeError)) and any(
        word in text for word in ("torchcodec", "backend", "ffmpeg", "no module"))


def _read_pipe(spec: str, utt_id: str) -> Tuple[np.ndarray, int]:
    """Run ``<command> |`` and decode the audio file it writes to stdout."""
    import soundfile

    cmd = spec.rstrip()[:-1]
    proc = subprocess.run(cmd, shell=True, capture_output=True)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-300:]
        raise AudioError(f"utterance {utt_id}: command failed (exit {proc.returncode}): {cmd} ({err})")
    if not proc.stdout:
        raise AudioError(f"utterance {utt_id}: command wrote no audio: {cmd}")
    try:
        return soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise AudioError(f"utterance {utt_id}: cannot decode the output of {cmd}: {e}") from None


def _read_ark(spec: str, utt_id: str) -> Tuple[np.ndarray, int]:
    """``path.ark:offset`` holding a kaldiio wav record (rate, int16/float samples)."""
    import kaldiio

    try:
        loaded = kaldiio.load_mat(spec)
    except FileNotFoundError:
        raise AudioError(f"utterance {utt_id}: ark file not found: {spec}") from None
    except Exception as e:  # noqa: BLE001
        raise AudioError(f"utterance {utt_id}: cannot read ark entry {spec}: {e}") from None
    if not isinstance(loaded, tuple):
        raise AudioError(f"utterance {utt_id}: {spec} is a feature matrix, not audio (no sample rate)")
    sr, data = loaded
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    return data.astype(np.float32).reshape(len(data), -1), int(sr)  # (S, C)


def resample(wav: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """1-D float32 samples from ``sr`` to ``target_sr`` (torchaudio sinc interpolation)."""
    if sr == target_sr:
        return wav
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(np.ascontiguousarray(wav)), sr, target_sr).numpy()


def load_wav(spec: str, target_sr: int = 16000, utt_id: str = "?") -> np.ndarray:
    """A wav.scp value -> float32 mono samples in [-1, 1] at ``target_sr``, shape (S,).

    ``spec`` is a file path, a command ending with ``|`` whose stdout is an audio file
    (WAV, FLAC, ...), or a kaldiio ``path.ark:offset``. Raises AudioError (naming
    ``utt_id`` and ``spec``) for missing, undecodable or empty audio.
    """
    spec = spec.strip()
    if spec.endswith("|"):
        data, sr = _read_pipe(spec, utt_id)
    elif ".ark:" in spec:
        data, sr = _read_ark(spec, utt_id)
    else:
        data, sr = _read_file(spec, utt_id)
    if data.size == 0:
        raise AudioError(f"utterance {utt_id}: empty audio (0 samples): {spec}")
    wav = np.ascontiguousarray(data[:, 0])  # (S, C) -> (S,) first channel
    if not np.isfinite(wav).all():
        raise AudioError(f"utterance {utt_id}: audio holds NaN/inf samples: {spec}")
    return np.ascontiguousarray(resample(wav, sr, target_sr), dtype=np.float32)


def cut_segment(wav: np.ndarray, start: float, end: float, sr: int, utt_id: str, spec: str) -> np.ndarray:
    """Samples [start, end) seconds of a recording (end -1: to the end).

    An end past the recording by up to 0.5 s is clipped (Kaldi's extract-segments
    tolerance); a segment starting beyond the recording or overshooting more raises.
    """
    duration = len(wav) / sr
    if end == -1:
        end = duration
    if start >= duration or end - duration > 0.5:
        raise AudioError(
            f"utterance {utt_id}: segment {start:.2f}-{end:.2f} s lies outside the recording "
            f"({duration:.2f} s): {spec}"
        )
    cut = wav[int(round(start * sr)) : min(int(round(end * sr)), len(wav))]
    if cut.size == 0:
        raise AudioError(f"utterance {utt_id}: empty segment {start:.3f}-{end:.3f} s: {spec}")
    return cut


def iter_kaldi_audio(
    data_dir, target_sr: int = 16000, errors: Optional[Dict[str, str]] = None
) -> Iterator[Tuple[str, np.ndarray]]:
    """Yield ``(utt_id, samples)`` for every utterance of a Kaldi data dir.

    Without ``segments`` the utterances are the wav.scp entries, in file order. With
    ``segments`` each recording is loaded once and all its segments are cut from it;
    recordings come in order of their first segment, segments in file order.
    If ``errors`` is a dict, utterances whose audio fails are recorded there
    (utt -> reason) and skipped; otherwise the AudioError is raised.
    """
    data_dir = Path(data_dir)
    wav_scp = read_kv(data_dir / "wav.scp")

    def fail(utts: List[str], e: AudioError):
        if errors is None:
            raise e
        for u in utts:
            errors[u] = str(e)
        logging.warning(str(e))

    if not (data_dir / "segments").is_file():
        for utt, spec in wav_scp.items():
            try:
                yield utt, load_wav(spec, target_sr, utt_id=utt)
            except AudioError as e:
                fail([utt], e)
        return

    by_rec: Dict[str, List[Tuple[str, float, float]]] = {}
    for utt, (rec, start, end) in read_segments(data_dir / "segments").items():
        by_rec.setdefault(rec, []).append((utt, start, end))
    for rec, segs in by_rec.items():
        utts = [u for u, _, _ in segs]
        if rec not in wav_scp:
            fail(utts, AudioError(f"utterances {utts[:3]}: recording {rec} is not in {data_dir / 'wav.scp'}"))
            continue
        try:
            wav = load_wav(wav_scp[rec], target_sr, utt_id=f"{utts[0]} (recording {rec})")
        except AudioError as e:
            fail(utts, e)
            continue
        for utt, start, end in segs:
            try:
                yield utt, cut_segment(wav, start, end, target_sr, utt, wav_scp[rec])
            except AudioError as e:
                fail([utt], e)
