"""Learning curves (bin/learning_curve): one point per epoch of a real (tiny) blsp_train run.

The module trains a tiny CNN adapter for 3 "epochs" of K = 2 iterations through ESPnet's
trainer (a few seconds), then decodes the untrained adapter and each ``<e>epoch.pth`` on the
first 4 validation utterances. The dump dir holds a ``-rp`` row among them (skipped).
"""

import json
import math
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from espnet_blsp.bin import blsp_train, learning_curve
from espnet_blsp.scoring import curves, scorers

REPO = Path(__file__).resolve().parents[1]
CONTINUE = "Continue the following text in a coherent and engaging style with less than 40 words."
TEXTS = ["the sun is warm today", "rain falls on the city", "we walk to the train station",
         "coffee and bread for the family", "music in the garden at night", "the river is cold"]
RESPONSES = ["and the river is cold", "we stay home", "it is late", "the family eats", "people dance",
             "we swim"]
K, EPOCHS, NUM_UTTS = 2, 3, 4


def _dump(d: Path) -> Path:
    """A stage-3 style dump dir: feats.scp, text, response, instruction, speech_shape."""
    import kaldiio

    rows = {f"u{i}": (t, r, CONTINUE) for i, (t, r) in enumerate(zip(TEXTS, RESPONSES))}
    rows["u0-rp"] = (TEXTS[0], TEXTS[0], "Please repeat the following words.")  # sorts inside the subset
    rng = np.random.default_rng(0)
    frames = {k: int(rng.integers(100, 200)) for k in rows}
    d.mkdir(parents=True)
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for k in sorted(rows):
            w(k, rng.standard_normal((frames[k], 80)).astype(np.float32))
    for col, name in enumerate(("text", "response", "instruction")):
        (d / name).write_text("".join(f"{k} {rows[k][col]}\n" for k in sorted(rows)))
    (d / "speech_shape").write_text("".join(f"{k} {frames[k]},80\n" for k in sorted(rows)))
    return d


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_whisper, tiny_llm):
    """(exp_dir, dump_dir) after blsp_train --max_epoch 3 --num_iters_per_epoch 2."""
    root = tmp_path_factory.mktemp("curve")
    d = _dump(root / "dump")
    args = ["--config", str(REPO / "conf/tuning/train_tiny_cnn.yaml"),
            "--speech_encoder_conf", f"model_name_or_path={tiny_whisper}",
            "--llm_conf", f"model_name_or_path={tiny_llm}"]
    for part in ("train", "valid"):
        for f, name, kind in (("feats.scp", "speech", "kaldi_ark"), ("text", "text", "text"),
                              ("response", "response", "text"), ("instruction", "instruction", "text")):
            args += [f"--{part}_data_path_and_name_and_type", f"{d / f},{name},{kind}"]
        args += [f"--{part}_shape_file", str(d / "speech_shape")]
    exp = root / "exp/tiny"
    blsp_train.main(args + ["--max_epoch", str(EPOCHS), "--num_iters_per_epoch", str(K),
                            "--keep_nbest_models", str(EPOCHS), "--batch_size", "2", "--num_workers", "0",
                            "--seed", "0", "--ngpu", "0", "--output_dir", str(exp)])
    assert sorted(p.name for p in exp.glob("*epoch.pth")) == [f"{e}epoch.pth" for e in range(1, EPOCHS + 1)]
    return exp, d


def _args(exp, d, out, *extra):
    return ["--exp_dir", str(exp), "--data_dir", str(d), "--num_utts", str(NUM_UTTS), "--out_dir", str(out),
            "--max_new_tokens", "6", "--batch_size", "3", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def curve(trained, tmp_path_factory):
    """(points returned by the tool, out_dir) of one full run."""
    exp, d = trained
    out = tmp_path_factory.mktemp("curves")
    return learning_curve.main(_args(exp, d, out)), out


def _count_decodes(monkeypatch):
    calls = []
    real = learning_curve.decode_speech

    def counted(model, keys, *a, **kw):
        calls.append(list(keys))
        return real(model, keys, *a, **kw)
    monkeypatch.setattr(learning_curve, "decode_speech", counted)
    return calls


def test_one_point_per_epoch(curve):
    points, out = curve
    assert sorted(points) == list(range(EPOCHS + 1))  # 0 = the untrained adapter
    assert [points[e]["step"] for e in sorted(points)] == [e * K for e in range(EPOCHS + 1)]
    assert points[0]["checkpoint"] == "untrained" and points[2]["checkpoint"] == "2epoch.pth"
    for p in points.values():
        assert isinstance(p["wer"], float) and math.isfinite(p["wer"]) and p["wer"] >= 0
        assert 0 <= p["self_bleu"] <= 100 and 0 <= p["self_rouge_l"] <= 100
        # the first 4 sorted ids that are not repetition rows: u0-rp (between u0 and u1) is skipped
        assert sorted(p["hyps"]["asr"]) == sorted(p["hyps"]["continuation"]) == ["u0", "u1", "u2", "u3"]
    lines = (out / "points.jsonl").read_text().splitlines()
    assert len(lines) == EPOCHS + 1 and curves.read_points(out / "points.jsonl") == points
    assert set(json.loads(lines[0])) >= {"epoch", "step", "wer", "self_bleu", "self_rouge_l", "hyps", "setup"}


def test_point_scores_equal_the_stage6_scorers(curve, trained, tmp_path):
    """Each point's WER / Self-BLEU / Self-ROUGE-L = local/score_{wer,self}.py on its stored hypotheses."""
    points, _ = curve
    _, d = trained
    refs = dict(line.split(" ", 1) for line in (d / "text").read_text().splitlines())
    resp = dict(line.split(" ", 1) for line in (d / "response").read_text().splitlines())
    for e, p in points.items():
        keys = sorted(p["hyps"]["asr"])

        def table(name, rows):
            path = tmp_path / f"{e}_{name}"
            path.write_text("".join(f"{k} {rows[k]}\n" for k in keys))
            return path
        wer = scorers.score_wer(table("ref", refs), table("asr", p["hyps"]["asr"]), tmp_path / f"{e}_w")
        slf = scorers.score_self(table("resp", resp), table("cont", p["hyps"]["continuation"]), tmp_path / f"{e}_s")
        assert p["wer"] == pytest.approx(wer["scores"]["wer"])
        assert p["self_bleu"] == pytest.approx(slf["scores"]["self_bleu"])
        assert p["self_rouge_l"] == pytest.approx(slf["scores"]["self_rouge_l"])


def test_png_and_markdown(curve, trained):
    points, out = curve
    exp, _ = trained
    png = (out / "learning_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert 1000 <= width <= 3000 and 300 <= height <= 1500, (width, height)
    assert len(png) > 20_000  # three drawn panels, not an empty canvas
    md = (out / "learning_curve.md").read_text()
    assert "![learning curve](learning_curve.png)" in md and "# Learning curve: tiny" in md
    table = curves.read_table(out / "learning_curve.md")
    assert table[0].startswith("| epoch | step | repeat WER↓ | Self-BLEU↑ | Self-ROUGE-L↑ | train loss | valid loss")
    assert len(table) == 2 + EPOCHS + 1
    assert table[2].startswith("| 0 (untrained) | 0 | ") and table[-1].startswith(f"| {EPOCHS} | {EPOCHS * K} | ")
    # the loss columns are the reporter's per-epoch means
    reporter = learning_curve.load_reporter(exp / "checkpoint.pth")
    last = reporter.stats[EPOCHS]
    assert f"| {last['train']['loss']:.3f} | {last['valid']['loss']:.3f} |" in table[-1]
    assert (out / "cmd").read_text().startswith("python -m espnet_blsp.bin.learning_curve --exp_dir ")


def test_rerun_decodes_nothing_new(curve, trained, monkeypatch):
    exp, d = trained
    points, out = curve
    before = (out / "points.jsonl").read_text()
    calls = _count_decodes(monkeypatch)
    assert learning_curve.main(_args(exp, d, out)) == points
    assert calls == [] and (out / "points.jsonl").read_text() == before


def test_killed_run_resumes_with_the_missing_points(curve, trained, tmp_path, monkeypatch):
    exp, d = trained
    points, out = curve
    lines = (out / "points.jsonl").read_text().splitlines()
    (tmp_path / "points.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:40])  # killed mid-write
    calls = _count_decodes(monkeypatch)
    again = learning_curve.main(_args(exp, d, tmp_path))
    assert len(calls) == 2 * 2  # epochs 2 and 3, two tasks each
    assert sorted(again) == sorted(points) and len((tmp_path / "points.jsonl").read_text().splitlines()) == 4
    for e in points:  # decoding is deterministic: the same hypotheses as the uninterrupted run
        assert again[e]["hyps"] == points[e]["hyps"] and again[e]["wer"] == points[e]["wer"]


def test_other_settings_are_refused(curve, trained):
    exp, d = trained
    _, out = curve
    with pytest.raises(SystemExit, match="decoded with other settings \\(keys\\)"):
        learning_curve.main(_args(exp, d, out) + ["--num_utts", "3"])


def test_clear_errors(trained, tmp_path):
    exp, d = trained
    with pytest.raises(SystemExit, match="config.yaml not found"):
        learning_curve.main(_args(tmp_path / "none", d, tmp_path / "o"))
    bare = tmp_path / "exp_bare"
    bare.mkdir()
    shutil.copy(exp / "config.yaml", bare / "config.yaml")
    shutil.copy(exp / "checkpoint.pth", bare / "checkpoint.pth")
    with pytest.raises(SystemExit, match=r"no <e>epoch.pth .*--keep_nbest_models >= max_epoch \(3\)"):
        learning_curve.main(_args(bare, d, tmp_path / "o"))
    for name in ("text", "response"):
        dd = tmp_path / f"no_{name}"
        shutil.copytree(d, dd)
        (dd / name).unlink()
        with pytest.raises(SystemExit, match=f"{dd / name} not found"):
            learning_curve.main(_args(exp, dd, tmp_path / "o"))


def test_steps_without_num_iters_per_epoch_come_from_the_reporter():
    reporter = SimpleNamespace(stats={1: {"train": {"total_count": 7}}, 2: {"train": {"total_count": 14}}})
    step = learning_curve.step_of({"num_iters_per_epoch": None}, reporter)
    assert [step(e) for e in (0, 1, 2)] == [0, 7, 14]
    assert learning_curve.step_of({"num_iters_per_epoch": 5}, reporter)(2) == 10
    with pytest.raises(ValueError, match="cannot convert epochs to steps"):
        learning_curve.step_of({"num_iters_per_epoch": None}, None)


def test_loss_curves_keep_model_terms_only():
    stats = {1: {"train": {"loss": 2.0, "loss_ce": 2.0, "loss_scale": 1.0, "acc": 0.1, "grad_norm": 3.0,
                           "total_count": 4},
                 "valid": {"loss": 2.5, "acc": float("nan")}},
             2: {"train": {"loss": 1.0, "loss_ce": 1.0, "acc": 0.3}}}
    assert curves.loss_curves(stats) == {
        "train": {"loss": {1: 2.0, 2: 1.0}, "loss_ce": {1: 2.0, 2: 1.0}, "acc": {1: 0.1, 2: 0.3}},
        "valid": {"loss": {1: 2.5}}}


def test_make_results_embeds_the_learning_curve(curve, tmp_path):
    _, out = curve
    exp = tmp_path / "exp/tiny"
    shutil.copytree(out, exp / "curves")
    other = tmp_path / "exp/nocurve"
    other.mkdir()

    def make_results(*args):
        r = subprocess.run([sys.executable, str(REPO / "local/make_results.py"), *args], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    make_results("--exp", "exp/tiny", "--exp", "exp/nocurve", "--out", "exp/RESULTS_all.md")
    text = (tmp_path / "exp/RESULTS_all.md").read_text()
    assert "## Learning curves" in text and "### tiny" in text and "### nocurve" not in text
    assert "![learning curve](tiny/curves/learning_curve.png)" in text  # relative to RESULTS_all.md
    for line in curves.read_table(exp / "curves/learning_curve.md"):
        assert line in text
    assert text.index("## Learning curves") < text.index("## Commands")
    make_results("--exp", "exp/tiny")  # exp/tiny/RESULTS.md
    assert "![learning curve](curves/learning_curve.png)" in (exp / "RESULTS.md").read_text()
    make_results("--exp", "exp/nocurve")  # no curves: no section, as before
    assert "Learning curves" not in (other / "RESULTS.md").read_text()

