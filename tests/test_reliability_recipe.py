"""Reliability of egs2/blsp/run.sh (issue 13, part A), on a fake corpus with tiny models.

- user errors stop the run before stage 1 with one line: a config typo, a bad model path;
- bad test clips (corrupt, 0 bytes, 0.05 s, 35 s) are excluded in stage 2, the run still
  finishes, and RESULTS.md says what was excluded and why (slow);
- an ark cut short is found and redone on the re-run; a changed corpus redoes stages 1-2.
"""

import os
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile

from espnet_blsp.testing.fake_corpus import make_fake_corpus
from espnet_blsp.testing.tiny import make_tiny_llm, make_tiny_whisper

REPO = Path(__file__).resolve().parents[1]
BAD_CLIPS = {  # utterance -> (what is wrong, the reason stage 2 gives)
    "spk0-test-bad-corrupt": ("corrupt", "unreadable audio"),
    "spk0-test-bad-empty": ("0 bytes", "unreadable audio"),
    "spk1-test-bad-short": ("0.05 s", "too short"),
    "spk1-test-bad-long": ("35 s", "too long"),
}


def add_bad_clips(test_dir: Path) -> None:
    """Append the four BAD_CLIPS to a Kaldi dir of the fake corpus."""
    wav = test_dir / "wav"
    (wav / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    (wav / "empty.wav").write_bytes(b"")
    soundfile.write(str(wav / "short.wav"), np.zeros(800, dtype=np.float32), 16000)  # 0.05 s
    soundfile.write(str(wav / "long.wav"), 0.01 * np.ones(35 * 16000, dtype=np.float32), 16000)
    files = dict(zip(BAD_CLIPS, ("corrupt.wav", "empty.wav", "short.wav", "long.wav")))
    for name, rows in (("wav.scp", {u: str((wav / f).resolve()) for u, f in files.items()}),
                       ("text", {u: "the weather is warm" for u in files}),
                       ("utt2spk", {u: u.split("-")[0] for u in files})):
        lines = (test_dir / name).read_text().splitlines() + [f"{k} {v}" for k, v in rows.items()]
        (test_dir / name).write_text("\n".join(sorted(lines)) + "\n")


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_rel")
    make_fake_corpus(str(root / "corpus"))
    add_bad_clips(root / "corpus" / "test")
    make_tiny_llm(str(root / "llm"))
    make_tiny_whisper(str(root / "whisper"))
    rdir = root / "egs"
    rdir.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "utils"):
        os.symlink(REPO / "egs2/blsp" / name, rdir / name)
    os.symlink(REPO / "conf", rdir / "conf")
    os.symlink(REPO / "local", rdir / "local")
    return root


def run(recipe, *args, check=True):
    cmd = ["./run.sh", "--corpus", "kaldi", "--corpus_dir", str(recipe / "corpus"), "--train_set", "train",
           "--valid_set", "dev", "--test_sets", "test", "--speech_encoder", str(recipe / "whisper"),
           "--llm", str(recipe / "llm"), "--nj", "2", "--teacher_batch_size", "4", "--max_new_tokens", "6",
           "--baselines", "text", "--train_config", "conf/tuning/train_tiny_cnn.yaml", *args]
    out = subprocess.run(cmd, cwd=recipe / "egs", capture_output=True, text=True, timeout=900)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_config_typo_stops_before_stage_1(recipe, tmp_path):
    text = (REPO / "conf/tuning/train_tiny_cnn.yaml").read_text().replace('rp_ratio: "0"', 'rp_ration: "1:9"')
    config = tmp_path / "x.yaml"
    config.write_text(text)
    out = run(recipe, "--stage", "1", "--stop_stage", "3", "--train_config", str(config), check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"unknown key 'rp_ration' in {config} (did you mean 'rp_ratio'?)"]
    assert "Stage 1" not in out.stdout


@pytest.mark.parametrize("option, kind", [("--speech_encoder", "speech_encoder"), ("--llm", "llm")])
def test_bad_model_path_stops_before_stage_1(recipe, tmp_path, option, kind):
    bad = tmp_path / "no_such_model"
    out = run(recipe, "--stage", "1", "--stop_stage", "3", option, str(bad), check=False)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [f"{option} {bad}: no such directory"]
    assert "Traceback" not in out.stdout + out.stderr and "Stage 1" not in out.stdout


@pytest.mark.slow
def test_recipe_with_bad_test_clips(recipe):
    egs = recipe / "egs"
    run(recipe, "--stage", "1", "--stop_stage", "6", "--inference_tasks", "asr continuation")
    excluded = dict(line.split(" ", 1) for line in (egs / "dump/test/excluded.txt").read_text().splitlines())
    assert sorted(excluded) == sorted(BAD_CLIPS)
    for utt, (_, reason) in BAD_CLIPS.items():
        assert excluded[utt].startswith(reason + ":"), (utt, excluded[utt])
        assert "torchcodec" not in excluded[utt]
    assert excluded["spk1-test-bad-long"].endswith("long.wav")  # too long/short name the file
    assert excluded["spk1-test-bad-short"].endswith("short.wav")
    assert "empty audio file (0 bytes)" in excluded["spk0-test-bad-empty"]
    results = (egs / "exp/train_tiny_cnn/RESULTS.md").read_text()
    assert ("test: stage 2 (dumping) excluded 4 utterances of 8 (data/test/text): 2 unreadable audio, "
            "1 too long, 1 too short; list: [dump/test/excluded.txt](../../dump/test/excluded.txt)") in results
    assert "## Problems" not in results and "| train_tiny_cnn |" in results
    score = (egs / "exp/train_tiny_cnn/decode_asr_test/score/result.txt").read_text()
    assert "utts=4" in score and "excluded=4" in score

    # an ark cut short under an intact scp: the re-run finds it and dumps those utterances again
    scp = dict(line.split(" ", 1) for line in (egs / "dump/test/feats.scp").read_text().splitlines())
    ark = Path(egs / scp[max(scp)].rsplit(":", 1)[0])
    with open(ark, "r+b") as f:
        f.truncate(ark.stat().st_size - 100)
    out = run(recipe, "--stage", "2", "--stop_stage", "2")
    out = out.stdout + out.stderr
    assert f"utterance {max(scp)}: {ark.relative_to(egs)} ends at byte" in out
    assert "dumping those utterances again" in out
    scp = dict(line.split(" ", 1) for line in (egs / "dump/test/feats.scp").read_text().splitlines())
    assert len(scp) == 4 and all(kaldiio.load_mat(str(egs / v) if not v.startswith("/") else v).ndim == 2
                                 for v in scp.values())
    out = run(recipe, "--stage", "2", "--stop_stage", "2").stdout
    assert "Stage 2: dump/test done, skipped" in out

    # a corpus fix (a transcript) redoes stage 1 and 2 of that set only
    text = recipe / "corpus/test/text"
    text.write_text(text.read_text().replace("the weather is warm", "the weather is cold", 1))
    out = run(recipe, "--stage", "1", "--stop_stage", "2").stdout
    assert f"Stage 1: data/test is stale ({recipe / 'corpus/test'} changed): preparing it again" in out
    assert "Stage 2: dump/test is stale (data/test changed): dumping it again" in out
    assert "Stage 2: dump/train done, skipped" in out
