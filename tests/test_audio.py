"""load_wav on files, pipes and ark offsets; resampling; segments; bad audio."""

from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile

import espnet_blsp.utils.audio as audio_mod
from espnet_blsp.utils.audio import AudioError, iter_kaldi_audio, load_wav


def tone(seconds: float, sr: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def pcm16(x: np.ndarray) -> np.ndarray:
    """What a 16-bit file stores: x quantised to multiples of 1/32768."""
    return np.round(x * 32767) / 32768


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_lossless_files(tmp_path, fmt):
    x = tone(0.5, 16000)
    path = tmp_path / f"a.{fmt.lower()}"
    soundfile.write(path, x, 16000, format=fmt, subtype="PCM_16")
    y = load_wav(str(path), 16000, utt_id="u1")
    assert y.dtype == np.float32 and y.shape == (8000,)
    np.testing.assert_allclose(y, pcm16(x), atol=1.5 / 32768)


def test_lossy_mp3(tmp_path):
    # Common Voice clips are mp3; libsndfile >= 1.1 encodes and decodes them
    x = tone(1.0, 16000)
    soundfile.write(tmp_path / "a.mp3", x, 16000, format="MP3")
    y = load_wav(str(tmp_path / "a.mp3"), 16000)
    assert abs(len(y) - 16000) < 1200  # encoder padding
    assert abs(peak_hz(y, 16000) - 440) < 3


def test_stereo_keeps_first_channel(tmp_path):
    left, right = tone(0.25, 16000, 300), tone(0.25, 16000, 900)
    soundfile.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_wav(str(tmp_path / "s.wav")), left)


def test_resample_from_22050(tmp_path):
    x = tone(1.0, 22050, 440)  # 22050 samples
    soundfile.write(tmp_path / "a.wav", x, 22050, subtype="FLOAT")
    y = load_wav(str(tmp_path / "a.wav"), 16000)
    assert y.shape == (16000,)  # ceil(22050 * 16000 / 22050)
    assert abs(peak_hz(y, 16000) - 440) < 2  # the tone keeps its pitch
    # interior samples match the analytic 440 Hz sine at 16 kHz
    np.testing.assert_allclose(y[1000:15000], tone(1.0, 16000, 440)[1000:15000], atol=2e-2)


def test_pipe_command(tmp_path):
    x = tone(0.5, 8000)
    soundfile.write(tmp_path / "a.wav", x, 8000, subtype="PCM_16")
    y = load_wav(f"cat {tmp_path / 'a.wav'} |", 8000, utt_id="u1")
    np.testing.assert_allclose(y, pcm16(x), atol=1.5 / 32768)
    # the pipe's output is resampled like a file's
    assert load_wav(f"cat {tmp_path / 'a.wav'} |", 16000).shape == (8000,)
    with pytest.raises(AudioError, match=r"utterance u7: command failed \(exit 1\)"):
        load_wav("cat /no/such/file.wav |", 16000, utt_id="u7")
    with pytest.raises(AudioError, match="utterance u8: command wrote no audio"):
        load_wav("true |", 16000, utt_id="u8")


def test_ark_offset(tmp_path):
    x = (tone(0.25, 16000) * 32767).astype(np.int16)
    kaldiio.save_ark(str(tmp_path / "w.ark"), {"u1": (16000, x)}, scp=str(tmp_path / "w.scp"))
    spec = (tmp_path / "w.scp").read_text().split()[1]  # /path/w.ark:<offset>
    y = load_wav(spec, 16000, utt_id="u1")
    np.testing.assert_allclose(y, x / 32768.0, atol=1e-7)


def test_bad_audio_names_utterance_and_path(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    with pytest.raises(AudioError, match=rf"utterance spk1-u3: cannot decode audio {bad}"):
        load_wav(str(bad), 16000, utt_id="spk1-u3")
    with pytest.raises(AudioError, match=r"utterance spk1-u4: audio file not found: /no/such\.flac"):
        load_wav("/no/such.flac", 16000, utt_id="spk1-u4")
    soundfile.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match=r"utterance spk1-u5: empty audio"):
        load_wav(str(tmp_path / "empty.wav"), 16000, utt_id="spk1-u5")
    assert issubclass(AudioError, ValueError)


def make_segmented_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    rec1 = tone(3.0, 16000, 200)
    rec2 = tone(2.0, 16000, 500)
    soundfile.write(tmp_path / "r1.wav", rec1, 16000, subtype="FLOAT")
    soundfile.write(tmp_path / "r2.flac", rec2, 16000)
    (d / "wav.scp").write_text(f"r1 {tmp_path / 'r1.wav'}\nr2 {tmp_path / 'r2.flac'}\n")
    # a-2 before b-1 in the file, but a-1/a-3 share r1 with a-2 ... b-1 reads r2 to its end (-1)
    (d / "segments").write_text("a-1 r1 0 1\na-2 r1 1.5 2.5\nb-1 r2 0.5 -1\nc-1 r1 2 3\n")
    return d


def test_segments_cut_each_recording_loaded_once(tmp_path, monkeypatch):
    d = make_segmented_dir(tmp_path)
    calls = []
    real = audio_mod.load_wav
    monkeypatch.setattr(audio_mod, "load_wav", lambda spec, sr, utt_id="?": calls.append(spec) or real(spec, sr, utt_id))
    out = dict(iter_kaldi_audio(d, 16000))
    assert sorted(calls) == sorted([str(tmp_path / "r1.wav"), str(tmp_path / "r2.flac")])  # once each
    rec1 = tone(3.0, 16000, 200)
    np.testing.assert_array_equal(out["a-1"], rec1[0:16000])
    np.testing.assert_array_equal(out["a-2"], rec1[24000:40000])
    np.testing.assert_array_equal(out["c-1"], rec1[32000:48000])
    assert out["b-1"].shape == (24000,)  # 0.5 s to the end of a 2 s recording
    # recordings in order of their first segment, segments in file order
    assert list(out) == ["a-1", "a-2", "c-1", "b-1"]


def test_iter_without_segments_and_error_collection(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    soundfile.write(tmp_path / "x.wav", tone(0.5, 22050), 22050)
    (d / "wav.scp").write_text(f"u1 {tmp_path / 'x.wav'}\nu2 {tmp_path / 'missing.wav'}\n")
    with pytest.raises(AudioError, match="utterance u2"):
        list(iter_kaldi_audio(d))
    errors = {}
    out = dict(iter_kaldi_audio(d, 16000, errors=errors))
    assert list(out) == ["u1"] and out["u1"].shape == (8000,)
    assert list(errors) == ["u2"] and "missing.wav" in errors["u2"]


def test_segment_outside_recording(tmp_path):
    d = make_segmented_dir(tmp_path)
    (d / "segments").write_text("a-1 r1 0 1\na-9 r1 5 6\n")
    errors = {}
    out = dict(iter_kaldi_audio(d, 16000, errors=errors))
    assert list(out) == ["a-1"]
    assert "utterance a-9: segment 5.00-6.00 s lies outside the recording (3.00 s)" in errors["a-9"]
