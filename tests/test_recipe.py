"""egs2/blsp/run.sh end to end (stages 1-6) on a fake corpus with tiny random models.

The test set holds, besides its 4 good clips, the 4 bad ones of ``BAD_CLIPS`` (corrupt,
0 bytes, 35 s, 0.05 s): stage 2 excludes them and the run still finishes (issue 13).
"""

import os
import shutil
import subprocess
from pathlib import Path

import kaldiio
import pytest

from espnet_blsp.testing.fake_corpus import BAD_CLIPS, add_bad_clips, make_fake_corpus
from espnet_blsp.testing.tiny import make_tiny_llm, make_tiny_whisper

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    make_fake_corpus(str(root / "corpus"))
    add_bad_clips(str(root / "corpus" / "test"))
    make_tiny_llm(str(root / "llm"))
    make_tiny_whisper(str(root / "whisper"))
    rdir = root / "egs"
    rdir.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "utils"):
        os.symlink(REPO / "egs2/blsp" / name, rdir / name)
    os.symlink(REPO / "conf", rdir / "conf")
    os.symlink(REPO / "local", rdir / "local")
    return root


def run(recipe, *args):
    cmd = ["./run.sh", "--corpus", "kaldi", "--corpus_dir", str(recipe / "corpus"), "--train_set", "train",
           "--valid_set", "dev", "--test_sets", "test", "--speech_encoder", str(recipe / "whisper"),
           "--llm", str(recipe / "llm"), "--nj", "2", "--teacher_batch_size", "4", "--max_new_tokens", "6",
           "--baselines", "text untrained", *args]
    out = subprocess.run(cmd, cwd=recipe / "egs", capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def test_help_lists_every_option(recipe):
    out = subprocess.run(["./run.sh", "--help"], cwd=recipe / "egs", capture_output=True, text=True)
    assert out.returncode == 0
    for opt in ("--stage", "--stop_stage", "--adapter", "--train_config", "--speech_encoder", "--llm",
                "--ngpu", "--nj", "--train_set", "--valid_set", "--test_sets", "--inference_tasks",
                "--rp_ratio", "--tag"):
        assert opt + "=" in out.stdout, opt
    bad = subprocess.run(["./run.sh", "--no_such_option", "1"], cwd=recipe / "egs", capture_output=True, text=True)
    assert bad.returncode != 0 and "no_such_option" in bad.stderr


@pytest.mark.slow
def test_stages_1_to_6_cnn(recipe):
    # also --analysis true: the representation analysis and the ASR probe on the first test set
    run(recipe, "--stage", "1", "--stop_stage", "6", "--train_config", "conf/tuning/train_tiny_cnn.yaml",
        "--inference_tasks", "asr continuation", "--rp_ratio", "1:3", "--analysis", "true",
        "--analysis_args", "--tsne_utts 4 --batch_size 4")
    egs = recipe / "egs"
    exp = egs / "exp/train_tiny_cnn"
    assert (exp / "valid.loss.best.pth").exists() and (exp / "config.yaml").exists()
    # checkpoints hold the trainable adapter only, not the frozen encoder and LLM
    import torch

    keys = list(torch.load(exp / "1epoch.pth", map_location="cpu"))
    assert keys and all(k.startswith("adapter.") for k in keys)
    lines = (egs / "dump/train_cw_rp1-3/response").read_text().splitlines()
    assert len(lines) == 8 + 3  # 8 continuations + round(8 / 3) repetitions
    results = (exp / "RESULTS.md").read_text()
    assert "| Text+LLM |" in results and "| train_tiny_cnn |" in results and "untrained adapter" in results
    hyp = (exp / "decode_asr_test/text").read_text().splitlines()
    assert len(hyp) == 4
    # the bad test clips: excluded in stage 2 with a reason naming the file, not scored, listed
    excluded = dict(line.split(" ", 1) for line in (egs / "dump/test/excluded.txt").read_text().splitlines())
    assert sorted(excluded) == sorted(BAD_CLIPS)
    for utt, reason in BAD_CLIPS.items():
        assert excluded[utt].startswith(reason + ":") and f"{utt}.wav" in excluded[utt], excluded[utt]
        assert "torchcodec" not in excluded[utt]
    assert "empty audio file (0 bytes)" in excluded["spk0-bad-empty"]
    assert ("test: stage 2 (dumping) excluded 4 utterances of 8 (data/test/text): 2 unreadable audio, "
            "1 too long, 1 too short; list: [dump/test/excluded.txt](../../dump/test/excluded.txt)") in results
    assert "## Problems" not in results
    score = (exp / "decode_asr_test/score/result.txt").read_text()
    assert "utts=4" in score and "excluded=4" in score
    for f in ("analysis/analysis.md", "analysis/layers.png", "analysis/tsne_train_tiny_cnn.png",
              "analysis/asr_probe/asr_probe.md", "analysis/asr_probe/layer2/score/score.json"):
        assert (exp / f).exists(), f
    assert "## Analysis" in results and "#### Representation analysis: train_tiny_cnn" in results
    assert "#### ASR probe: train_tiny_cnn" in results and "(analysis/layers.png)" in results
    # a re-run skips finished stages and redoes nothing
    out = run(recipe, "--stage", "2", "--stop_stage", "3", "--train_config", "conf/tuning/train_tiny_cnn.yaml", "--rp_ratio", "1:3")
    assert "done, skipped" in out


@pytest.mark.slow
def test_cformer_kd_with_partial_lora(recipe):
    run(recipe, "--stage", "1", "--stop_stage", "5", "--adapter", "cformer",
        "--train_config", "conf/tuning/train_tiny_cformer.yaml", "--inference_tasks", "asr")
    exp = recipe / "egs/exp/train_tiny_cformer"
    log = (exp / "train.log").read_text()
    assert "loss_kl_input" in log and "loss_cif" in log and "lora_A" in log
    assert len((exp / "decode_asr_test/text").read_text().splitlines()) == 4


@pytest.mark.slow
def test_pretrain_config_initialises_the_training(recipe):
    """--pretrain_config trains exp/<tag>/pretrain on the transcripts alone, then the
    training starts from its best checkpoint; a re-run does not redo the pretraining."""
    import torch

    args = ("--stage", "1", "--stop_stage", "4", "--train_config", "conf/tuning/train_tiny_cnn.yaml",
            "--pretrain_config", "conf/tuning/train_tiny_cnn_ctc.yaml", "--tag", "tiny_from_ctc",
            # lr 0: the training's weights stay those it started from
            "--train_args", "--optim_conf lr=0.0")
    run(recipe, *args)
    exp = recipe / "egs/exp/tiny_from_ctc"
    log = (exp / "pretrain/train.log").read_text()
    assert "loss_ctc" in log and "response_ids" not in (exp / "pretrain/train.cmd").read_text()
    pre = torch.load(exp / "pretrain/valid.loss.best.pth", map_location="cpu")
    got = torch.load(exp / "1epoch.pth", map_location="cpu")
    assert got and all(torch.equal(pre[k], got[k]) for k in got)
    # the CTC blank belongs to the pretraining's loss alone: dropped, and the log says so
    assert set(pre) - set(got) == {"ctc_blank"}
    assert "Filter out ctc_blank from pretrained dict" in (exp / "train.log").read_text()
    out = run(recipe, *args[:1], "4", *args[2:])
    assert "pretraining exp/tiny_from_ctc/pretrain done, skipped" in out
    # another pretraining under a training that did not start from it stops, and says so
    bad = subprocess.run(["./run.sh", "--corpus", "kaldi", "--corpus_dir", str(recipe / "corpus"), "--train_set",
                          "train", "--valid_set", "dev", "--test_sets", "test", "--speech_encoder",
                          str(recipe / "whisper"), "--llm", str(recipe / "llm"), *args[:1], "4", *args[2:],
                          "--pretrain_args", "--max_epoch 2"], cwd=recipe / "egs", capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "did not start from this pretraining" in bad.stdout + bad.stderr


@pytest.mark.parametrize(
    "args, config",
    [
        ([], "conf/mini/train_blsp.yaml"),
        (["--adapter", "cformer"], "conf/mini/train_blsp_kd_ctc.yaml"),
        (["--adapter", "cformer", "--corpus", "kaldi", "--speech_encoder", "w", "--llm", "l"], "conf/train_blsp_kd5.yaml"),
        (["--train_config", "conf/mini/train_blsp_rp.yaml"], "conf/mini/train_blsp_rp.yaml"),
    ],
)
def test_run_sh_resolves_its_defaults(recipe, args, config):
    """No stage runs (--stage 7): only option parsing and the default config choice."""
    out = subprocess.run(["./run.sh", "--stage", "7", *args], cwd=recipe / "egs", capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"config {config}," in out.stdout


def test_run_sh_bad_options_fail_loudly(recipe):
    for args, msg in [(["--adapter", "nope"], "unknown --adapter nope"),
                      (["--corpus", "librispeech"], "--speech_encoder and --llm are required"),
                      (["--train_config", "conf/none.yaml"], "no such config: conf/none.yaml")]:
        out = subprocess.run(["./run.sh", "--stage", "7", *args], cwd=recipe / "egs", capture_output=True,
                             text=True, timeout=120)
        assert out.returncode != 0 and msg in out.stdout + out.stderr, (args, out.stdout, out.stderr)


def test_run_sh_refuses_data_of_another_mini_size(recipe):
    """data/ and dump/ are named by split, not by size: --ngpu 1 (mini_20000) after the CPU
    default (mini_2000) must not silently reuse the 2,000-utterance sets."""
    egs = recipe / "egs"
    (egs / "data").mkdir(exist_ok=True)
    (egs / "data" / ".mini_dir").write_text("mini_1200\n")  # the cpu preset's corpus
    try:
        same = subprocess.run(["./run.sh", "--stage", "7"], cwd=egs, capture_output=True, text=True, timeout=120)
        assert same.returncode == 0, same.stdout + same.stderr
        other = subprocess.run(["./run.sh", "--stage", "7", "--mini_num_train", "20000"], cwd=egs,
                               capture_output=True, text=True, timeout=120)
        assert other.returncode != 0
        assert "hold the mini corpus of mini_1200, this run uses mini_20000" in other.stdout + other.stderr
        assert "move data/, dump/ and exp/ aside" in other.stdout + other.stderr
    finally:
        (egs / "data" / ".mini_dir").unlink()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_run_sh_ngpu_without_a_gpu_fails_before_any_stage(recipe):
    out = subprocess.run(["./run.sh", "--stage", "5", "--stop_stage", "5", "--ngpu", "1"], cwd=recipe / "egs",
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--ngpu 1, but torch sees 0 CUDA GPU(s)" in out.stdout + out.stderr
    ok = subprocess.run(["./run.sh", "--stage", "7", "--ngpu", "1"], cwd=recipe / "egs", capture_output=True,
                        text=True, timeout=120)  # no stage that needs a GPU here
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_run_sh_presets_fill_only_empty_options(recipe):
    """A preset fills the options the command line leaves empty; --train_args given on the
    command line wins; an unknown key or preset name stops the run with its name."""
    egs = recipe / "egs"
    (egs / "data").mkdir(exist_ok=True)
    (egs / "data" / ".mini_dir").write_text("another\n")  # the guard's message shows the corpus name
    try:
        out = subprocess.run(["./run.sh", "--stage", "7", "--preset", "cpu_long", "--mini_num_train", "3000"],
                             cwd=egs, capture_output=True, text=True, timeout=120)
    finally:
        (egs / "data" / ".mini_dir").unlink()
    # mini_num_train from the command line, mini_num_llm_train (2000) from the preset
    assert "this run uses mini_3000_llm2000" in out.stdout + out.stderr, out.stdout + out.stderr
    (egs / "bad_preset.yaml").write_text("mini_num_trian: 5\n")
    try:
        bad = subprocess.run(["./run.sh", "--stage", "7", "--preset", "bad_preset.yaml"], cwd=egs,
                             capture_output=True, text=True, timeout=120)
    finally:
        (egs / "bad_preset.yaml").unlink()
    assert bad.returncode != 0 and "'mini_num_trian' is not a run.sh option" in bad.stdout + bad.stderr
    nope = subprocess.run(["./run.sh", "--stage", "7", "--preset", "nope"], cwd=egs, capture_output=True,
                          text=True, timeout=120)
    assert nope.returncode != 0 and "no such preset: nope (known: cpu cpu_broad cpu_long gpu)" in nope.stdout + nope.stderr


@pytest.mark.parametrize("name", sorted(p.stem[len("preset_"):] for p in (REPO / "conf" / "mini").glob("preset_*.yaml")))
def test_run_sh_every_shipped_preset_is_accepted(recipe, name):
    """Each conf/mini/preset_*.yaml names only run.sh options and existing configs, and
    run.sh takes it (an unknown key would stop it); cpu_broad brings the CTC warm start."""
    import yaml

    preset = yaml.safe_load((REPO / "conf" / "mini" / f"preset_{name}.yaml").read_text())
    for key in ("decode_config", "pretrain_config", "train_config"):
        if key in preset:
            assert (REPO / preset[key]).is_file(), f"preset {name}: {key} {preset[key]} does not exist"
    out = subprocess.run(["./run.sh", "--stage", "7", "--preset", name], cwd=recipe / "egs",
                         capture_output=True, text=True, timeout=120)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log
    assert f"preset {name}" in log, log
    if name == "cpu_broad":
        assert "(after conf/mini/train_adapter_ctc.yaml)" in log, log


# ------------------------------------------------------- user errors stop before stage 1

def run_fails(recipe, *args):
    """run.sh with the fixture's options (+ args) that must exit 1; its stdout, stderr."""
    cmd = ["./run.sh", "--corpus", "kaldi", "--corpus_dir", str(recipe / "corpus"), "--train_set", "train",
           "--valid_set", "dev", "--test_sets", "test", "--speech_encoder", str(recipe / "whisper"),
           "--llm", str(recipe / "llm"), "--train_config", "conf/tuning/train_tiny_cnn.yaml",
           "--stage", "1", "--stop_stage", "3", *args]
    out = subprocess.run(cmd, cwd=recipe / "egs", capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Stage 1" not in out.stdout and "Traceback" not in out.stdout + out.stderr
    return out.stdout, out.stderr


def test_config_typo_stops_before_stage_1(recipe, tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text((REPO / "conf/tuning/train_tiny_cnn.yaml").read_text().replace(
        'rp_ratio: "0"', 'rp_ration: "1:9"'))
    _, err = run_fails(recipe, "--train_config", str(config))
    assert err.strip().splitlines() == [f"unknown key 'rp_ration' in {config} (did you mean 'rp_ratio'?)"]


@pytest.mark.parametrize("option", ["--speech_encoder", "--llm"])
def test_bad_model_path_stops_before_stage_1(recipe, tmp_path, option):
    bad = tmp_path / "no_such_model"
    _, err = run_fails(recipe, option, str(bad))
    assert err.strip().splitlines() == [f"{option} {bad}: no such directory"]


# ------------------------------------------------ re-runs find broken and stale outputs

def scp_entries(path: Path):
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


@pytest.mark.slow
def test_rerun_redumps_an_ark_cut_short(recipe):
    """An ark cut short under an intact feats.scp: the re-run names the utterance and ark
    and dumps just those utterances again (before: ValueError: cannot reshape array)."""
    egs = recipe / "egs"
    run(recipe, "--stage", "1", "--stop_stage", "2", "--train_config", "conf/tuning/train_tiny_cnn.yaml")
    scp = scp_entries(egs / "dump/test/feats.scp")
    last = max(scp)  # the last record of the last job's ark
    ark = scp[last].rsplit(":", 1)[0]
    with open(egs / ark, "r+b") as f:
        f.truncate((egs / ark).stat().st_size - 100)
    out = run(recipe, "--stage", "2", "--stop_stage", "2", "--train_config", "conf/tuning/train_tiny_cnn.yaml")
    assert f"utterance {last}: {ark} ends at byte" in out
    assert "Stage 2: dump/test has broken features (above): dumping those utterances again" in out
    scp = scp_entries(egs / "dump/test/feats.scp")
    assert len(scp) == 4 and all(kaldiio.load_mat(str(egs / v)).ndim == 2 for v in scp.values())
    out = run(recipe, "--stage", "2", "--stop_stage", "2", "--train_config", "conf/tuning/train_tiny_cnn.yaml")
    assert "Stage 2: dump/test done, skipped" in out


@pytest.mark.slow
def test_rerun_after_a_corpus_fix_redoes_stages_1_and_2_of_that_set(recipe):
    egs = recipe / "egs"
    run(recipe, "--stage", "1", "--stop_stage", "2", "--train_config", "conf/tuning/train_tiny_cnn.yaml")
    text = recipe / "corpus/test/text"
    text.write_text(text.read_text().replace("the weather is warm", "the weather is cold", 1))
    out = run(recipe, "--stage", "1", "--stop_stage", "2", "--train_config", "conf/tuning/train_tiny_cnn.yaml")
    assert f"Stage 1: data/test is stale ({recipe / 'corpus/test'} changed): preparing it again" in out
    assert "Stage 2: dump/test is stale (data/test changed): dumping it again" in out
    assert "Stage 2: dump/train done, skipped" in out and "data/train is stale" not in out
    assert "the weather is cold" in (egs / "data/test/text").read_text()


@pytest.mark.slow
def test_stage_4a_recollects_the_shapes_after_its_dumps_were_redone(recipe):
    """stats/.done records the files of the training dump dirs (before: only their names, so
    shapes collected from an old dump were reused after a corpus fix redid it)."""
    egs = recipe / "egs"
    cfg = ("--train_config", "conf/tuning/train_tiny_cnn.yaml")
    run(recipe, "--stage", "1", "--stop_stage", "4", *cfg)
    out = run(recipe, "--stage", "4", "--stop_stage", "4", *cfg)
    assert "Stage 4a" not in out  # nothing changed: the shapes are kept
    text = recipe / "corpus/train/text"
    lines = text.read_text().splitlines()
    key, words = lines[0].split(" ", 1)
    lines[0] = f"{key} {words} again"
    text.write_text("\n".join(lines) + "\n")
    out = run(recipe, "--stage", "1", "--stop_stage", "4", *cfg)
    assert "Stage 2: dump/train is stale (data/train changed): dumping it again" in out
    assert "Stage 4a: exp/train_tiny_cnn/stats is stale (" in out
    assert "Stage 4a: collect_stats: dump/train_cw -> exp/train_tiny_cnn/stats" in out
    shapes = (egs / "exp/train_tiny_cnn/stats/train/speech_shape").read_text().split()
    assert key in shapes
    out = run(recipe, "--stage", "4", "--stop_stage", "4", *cfg)
    assert "Stage 4a" not in out


@pytest.mark.slow
def test_stage_3_with_another_nj_copies_the_continuations(recipe):
    """--nj 1 after a run with --nj 2: the continuations of split2 are copied into split1."""
    egs = recipe / "egs"
    cfg = ("--train_config", "conf/tuning/train_tiny_cnn.yaml")
    run(recipe, "--stage", "1", "--stop_stage", "3", *cfg)
    before = (egs / "dump/dev_cw/response_ids").read_text()
    shutil.rmtree(egs / "dump/dev_cw")
    out = run(recipe, "--stage", "3", "--stop_stage", "3", "--nj", "1", *cfg)
    assert "Stage 3: teacher generation: dump/dev/text -> dump/dev_cw (rp_ratio 0; reusing 2 files of another --nj)" in out
    assert (egs / "dump/dev_cw/response_ids").read_text() == before
    assert "continuations taken from 2 files of another --nj" in (egs / "dump/dev/log/teacher.1.log").read_text()
