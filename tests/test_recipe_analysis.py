"""run.sh --analysis true: stages 1-6 on a fake corpus with tiny random models, then the
representation analysis and the ASR probe on the first test set, embedded in RESULTS.md."""

import os
import subprocess
from pathlib import Path

import pytest

from espnet_blsp.testing.fake_corpus import make_fake_corpus
from espnet_blsp.testing.tiny import make_tiny_llm, make_tiny_whisper

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_sh_analysis(tmp_path):
    make_fake_corpus(str(tmp_path / "corpus"))
    make_tiny_llm(str(tmp_path / "llm"))
    make_tiny_whisper(str(tmp_path / "whisper"))
    egs = tmp_path / "egs"
    egs.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "utils"):
        os.symlink(REPO / "egs2/blsp" / name, egs / name)
    os.symlink(REPO / "conf", egs / "conf")
    os.symlink(REPO / "local", egs / "local")
    cmd = ["./run.sh", "--stage", "1", "--corpus", "kaldi", "--corpus_dir", str(tmp_path / "corpus"),
           "--train_set", "train", "--valid_set", "dev", "--test_sets", "test", "--speech_encoder",
           str(tmp_path / "whisper"), "--llm", str(tmp_path / "llm"), "--train_config",
           "conf/tuning/train_tiny_cnn.yaml", "--nj", "1", "--teacher_batch_size", "4", "--max_new_tokens", "4",
           "--baselines", "text", "--inference_tasks", "asr", "--analysis", "true",
           "--analysis_args", "--tsne_utts 4 --batch_size 4"]
    out = subprocess.run(cmd, cwd=egs, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    exp = egs / "exp/train_tiny_cnn"
    for f in ("analysis/analysis.md", "analysis/layers.png", "analysis/tsne_train_tiny_cnn.png",
              "analysis/asr_probe/asr_probe.md", "analysis/asr_probe/layer2/score/score.json"):
        assert (exp / f).exists(), f
    results = (exp / "RESULTS.md").read_text()
    assert "## Analysis" in results and "#### Representation analysis: train_tiny_cnn" in results
    assert "#### ASR probe: train_tiny_cnn" in results and "(analysis/layers.png)" in results
