"""Reliability (issue 13, part A): exclusions reach scoring, configs and model paths are
checked before stage 1, broken feature arks and changed inputs are found, logs are kept.

The unit tests are fast; ``test_recipe_with_bad_test_clips`` runs run.sh on tiny models
(slow)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile

from espnet_blsp.scoring.tables import match

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("train*.yaml"))
DECODE_CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("decode*.yaml"))


# ------------------------------------------------------------------ 1. exclusions in scoring

def test_match_drops_stage2_exclusions_and_names_the_rest(caplog):
    ref = {"a": "x", "b": "y", "c": "z", "d": "w"}
    hyp = {"a": "x", "b": "y"}
    with caplog.at_level(logging.INFO):
        m = match(ref, hyp, ref_name="data/test/text", hyp_name="hyp",
                  excluded={"c": "too long: 35.00 s > 30 s", "d": "unreadable audio"},
                  excluded_name="dump/test/excluded.txt")
    assert m.keys == ["a", "b"] and m.excluded == ["c", "d"] and m.missing == []
    assert "2 of 4 utterances of data/test/text not scored" in caplog.text
    assert "dump/test/excluded.txt" in caplog.text
    # an id neither decoded nor excluded is still an error, and says exactly that
    with pytest.raises(ValueError) as e:
        match(ref, hyp, ref_name="data/test/text", hyp_name="hyp", excluded={"c": "too short"},
              excluded_name="dump/test/excluded.txt")
    msg = str(e.value)
    assert "1 of 3 utterance ids of data/test/text were neither decoded nor excluded in stage 2" in msg
    assert msg.split("stage 2 (dump/test/excluded.txt): ")[1].startswith("d ")
    assert "interrupted decoding?" not in msg


def _write(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def test_make_results_scores_the_decoded_and_reports_exclusions(tmp_path):
    _write(tmp_path / "data/test/text", [f"u{i} hello world" for i in range(5)])
    _write(tmp_path / "data/test/excluded.txt", ["u9 empty transcript"])
    _write(tmp_path / "dump/test/excluded.txt",
           ["u3 unreadable audio: utterance u3: cannot decode audio /c/u3.wav: Format not recognised.",
            "u4 too long: 35.00 s > 30 s: /c/u4.wav"])
    _write(tmp_path / "exp/tag/decode_asr_test/text", [f"u{i} hello world" for i in range(3)])
    # no --dump_root given: dump/ of the cwd; an unscorable decode dir would exit 1
    out = subprocess.run([sys.executable, str(REPO / "local/make_results.py"), "--exp", "exp/tag", "--score",
                          "--data_root", "data", "--out", "exp/tag/RESULTS.md"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "2 of 5 utterances of data/test/text not scored" in out.stderr
    results = (tmp_path / "exp/tag/RESULTS.md").read_text()
    assert "## Excluded utterances" in results
    assert ("test: stage 2 (dumping) excluded 2 utterances of 5 (data/test/text): 1 unreadable audio, "
            "1 too long; list: [dump/test/excluded.txt](../../dump/test/excluded.txt)") in results
    assert "test: stage 1 (data prep) excluded 1 utterances: 1 empty transcript" in results
    score = (tmp_path / "exp/tag/decode_asr_test/score/result.txt").read_text()
    assert "utts=3" in score and "excluded=2" in score


# ------------------------------------------------------------------ 4. config checks

def _check(**kw):
    from espnet_blsp.bin.check_config import check_decode_config, check_train_config

    return check_train_config(kw["train"]) if "train" in kw else check_decode_config(kw["decode"])


@pytest.mark.parametrize("config", CONFIGS)
def test_every_shipped_train_config_passes(config):
    assert _check(train=str(REPO / config)) == []


@pytest.mark.parametrize("config", DECODE_CONFIGS)
def test_every_shipped_decode_config_passes(config):
    assert _check(decode=str(REPO / config)) == []


@pytest.mark.parametrize("edit, message", [
    (("rp_ration", "1:9"), "unknown key 'rp_ration' in {p} (did you mean 'rp_ratio'?)"),
    (("speech_adapter_conf", {"bottleneck_dm": 32}),
     "unknown key 'bottleneck_dm' in speech_adapter_conf of {p} (did you mean 'bottleneck_dim'?)"),
    (("llm_conf", {"prompt_templat": "chat"}),
     "unknown key 'prompt_templat' in llm_conf of {p} (did you mean 'prompt_template'?)"),
    (("llm_conf", {"lora_conf": {"r": 4, "alpah": 4, "target_modules": ["q_proj"]}}),
     "unknown key 'alpah' in llm_conf.lora_conf of {p} (did you mean 'alpha'?)"),
    (("model_conf", {"kl_resp_wieght": 1.0}),
     "unknown key 'kl_resp_wieght' in model_conf of {p} (did you mean 'kl_resp_weight'?)"),
    (("speech_encoder_conf", {"freez": True}),
     "unknown key 'freez' in speech_encoder_conf of {p} (did you mean 'freeze'?)"),
    (("optim_conf", {"weight_decy": 0.1}),
     "unknown key 'weight_decy' in optim_conf of {p} (did you mean 'weight_decay'?)"),
    (("scheduler_conf", {"warmup_step": 5}),
     "unknown key 'warmup_step' in scheduler_conf of {p} (did you mean 'warmup_steps'?)"),
    (("speech_adapter", "cformr"), "unknown speech_adapter 'cformr' in {p} (did you mean 'cformer'?)"),
])
def test_config_typos_get_one_clear_line(tmp_path, edit, message):
    import yaml

    config = yaml.safe_load((REPO / "conf/tuning/train_tiny_cnn.yaml").read_text())
    key, value = edit
    if isinstance(value, dict) and isinstance(config.get(key), dict):
        config[key].update(value)
    else:
        config[key] = value
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(config))
    problems = _check(train=str(path))
    assert len(problems) == 1 and problems[0].startswith(message.format(p=path)), problems


def test_pretrain_config_must_fit_the_training_config(tmp_path):
    import yaml

    from espnet_blsp.bin.check_config import check_pretrain_config

    tiny = REPO / "conf/tuning"
    assert check_pretrain_config(str(tiny / "train_tiny_cnn_ctc.yaml"), str(tiny / "train_tiny_cnn.yaml")) == []
    assert check_pretrain_config(str(REPO / "conf/mini/train_adapter_ctc.yaml"), str(REPO / "conf/mini/train_blsp.yaml")) == []
    # another adapter (or another width) cannot initialise it: ESPnet would skip it silently
    for main in (tiny / "train_tiny_cformer.yaml", REPO / "conf/mini/train_blsp_kd_ctc.yaml"):
        problems = check_pretrain_config(str(tiny / "train_tiny_cnn_ctc.yaml"), str(main))
        assert len(problems) == 1 and "has other parameters than that of" in problems[0], problems
    config = yaml.safe_load((tiny / "train_tiny_cnn_ctc.yaml").read_text())
    config["speech_adapter_conf"]["bottleneck_dim"] = 64
    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(config))
    problems = check_pretrain_config(str(tmp_path / "wide.yaml"), str(tiny / "train_tiny_cnn.yaml"))
    assert len(problems) == 1 and "'bottleneck_dim': 64" in problems[0], problems
    # a config that needs stage 3's responses has none to train on
    problems = check_pretrain_config(str(tiny / "train_tiny_cnn.yaml"), str(tiny / "train_tiny_cnn.yaml"))
    assert len(problems) == 1 and "needs 'use_responses: false'" in problems[0], problems


def test_decode_config_typo(tmp_path):
    path = tmp_path / "decode.yaml"
    path.write_text("batch_size: 8\nmax_new_token: 32\n")
    assert _check(decode=str(path)) == [
        f"unknown key 'max_new_token' in {path} (did you mean 'max_new_tokens'?)"]


# ------------------------------------------------------------------ 5. model paths

def test_model_paths(tmp_path, tiny_whisper, tiny_llm, monkeypatch):
    from huggingface_hub import constants

    from espnet_blsp.utils.model_paths import check_model_path, resolve_model_dir

    assert check_model_path(tiny_whisper, "speech_encoder") == []
    assert check_model_path(tiny_llm, "llm") == []
    assert check_model_path(str(tmp_path / "nowhere"), "llm") == [f"--llm {tmp_path / 'nowhere'}: no such directory"]
    assert check_model_path(tiny_llm, "speech_encoder")[0].endswith("describes a 'llama' model, not Whisper")
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text('{"model_type": "llama"}')
    assert "no tokenizer in" in check_model_path(str(no_tok), "llm")[0]
    # a hub id: only its snapshot in the local cache counts
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    missing = check_model_path("org/whisper-x", "speech_encoder")
    assert missing == [f"--speech_encoder org/whisper-x: no such directory, and not in the local Hugging "
                       f"Face cache ({tmp_path / 'hub'}; nothing is downloaded)"]
    repo = tmp_path / "hub" / "models--org--whisper-x"
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (snap / "config.json").write_text((Path(tiny_whisper) / "config.json").read_text())
    assert resolve_model_dir("org/whisper-x", "speech_encoder") == snap


# ------------------------------------------------------------------ 6. smaller ones

def test_verify_finds_an_ark_cut_short_and_drops_its_entries(tmp_path, caplog):
    from espnet_blsp.bin.dump_feats import get_parser, verify

    out = tmp_path / "dump/test"
    split = out / "split1"
    split.mkdir(parents=True)
    ark, scp = split / "feats.1.ark", split / "feats.1.scp"
    rng = np.random.default_rng(0)
    for utt in ("u1", "u2", "u3"):
        kaldiio.save_ark(str(ark), {utt: rng.standard_normal((91, 80)).astype(np.float32)}, scp=str(scp), append=True)
    (out / "feats.scp").write_text(scp.read_text())
    (out / ".done").write_text("x=1\n")
    args = get_parser().parse_args(["--out_dir", str(out), "--verify"])
    assert verify(args)
    size = ark.stat().st_size
    with open(ark, "r+b") as f:  # the last matrix loses half its bytes
        f.truncate(size - 91 * 80 * 2)
    with caplog.at_level(logging.WARNING):
        assert not verify(args)
    assert f"utterance u3: {ark} ends at byte {size - 91 * 80 * 2}" in caplog.text
    assert [line.split()[0] for line in scp.read_text().splitlines()] == ["u1", "u2"]
    assert not (out / ".done").exists()


def test_stage_marks_follow_content_and_audio(tmp_path):
    from espnet_blsp.utils.stage_marks import changes, describe

    d = tmp_path / "data"
    d.mkdir()
    wav = tmp_path / "a.wav"
    soundfile.write(str(wav), np.zeros(1600, dtype=np.float32), 16000)
    (d / "wav.scp").write_text(f"a {wav}\n")
    (d / "text").write_text("a hello\n")
    first = describe(["llm=x"], files=[str(d)])
    (d / "text").write_text("a hello\n")  # rewritten, same content
    assert changes(first, describe(["llm=x"], files=[str(d)])) == []
    assert changes(first, describe(["llm=y"], files=[str(d)])) == ["llm was 'x', now 'y'"]
    (d / "text").write_text("a hello there\n")
    assert changes(first, describe(["llm=x"], files=[str(d)])) == [f"{d} changed"]
    second = describe(["llm=x"], files=[str(d)])
    soundfile.write(str(wav), np.zeros(3200, dtype=np.float32), 16000)  # a repaired clip
    assert changes(second, describe(["llm=x"], files=[str(d)])) == [f"{d} changed"]
    assert changes({"encoder_output": "false"}, second) == [  # a mark of the older run.sh
        "encoder_output was 'false', now not given", f"{d} not recorded", "llm not recorded"]
    assert changes({}, second) == ["the mark records no inputs (made by an older run.sh)"]


def test_rotate_log_keeps_every_earlier_log(tmp_path):
    func = subprocess.run(["sed", "-n", "/^rotate_log()/,/^}/p", str(REPO / "egs2/blsp/run.sh")],
                          capture_output=True, text=True, check=True).stdout
    assert func.strip()
    log = tmp_path / "train.log"
    for attempt in range(3):
        subprocess.run(["bash", "-c", f"{func}\nrotate_log {log}"], check=True)
        log.write_text(f"attempt {attempt}\n")
    assert log.read_text() == "attempt 2\n"
    assert (tmp_path / "train.1.log").read_text() == "attempt 1\n"
    assert (tmp_path / "train.2.log").read_text() == "attempt 0\n"


def test_corrupt_and_empty_audio_reasons_are_about_the_file(tmp_path):
    from espnet_blsp.utils.audio import AudioError, load_wav

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF" + os.urandom(200))
    with pytest.raises(AudioError) as e:
        load_wav(str(bad), utt_id="u1")
    assert str(e.value).startswith(f"utterance u1: cannot decode audio {bad}: ")
    assert "torchcodec" not in str(e.value).lower() and "install" not in str(e.value).lower()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match=f"utterance u2: empty audio file \\(0 bytes\\): {empty}"):
        load_wav(str(empty), utt_id="u2")


def test_config_check_mark_skips_only_while_nothing_changed(tmp_path, capsys):
    from espnet_blsp.bin.check_config import main

    config, mark = tmp_path / "x.yaml", tmp_path / "exp/.config_checked"
    config.write_text((REPO / "conf/tuning/train_tiny_cnn.yaml").read_text())
    main(["--train_config", str(config), "--mark", str(mark)])
    assert f"files:{config}=" in mark.read_text()
    config.write_text(config.read_text().replace("bottleneck_dim:", "bottleneck_dm:"))
    with pytest.raises(SystemExit) as e:  # the config changed: checked again
        main(["--train_config", str(config), "--mark", str(mark)])
    assert e.value.code == 1
    assert f"unknown key 'bottleneck_dm' in speech_adapter_conf of {config}" in capsys.readouterr().err


def test_score_cli_takes_the_exclusion_list(tmp_path):
    _write(tmp_path / "ref", ["u1 a b", "u2 c d", "u3 e"])
    _write(tmp_path / "hyp", ["u1 a b"])
    _write(tmp_path / "excluded.txt", ["u2 too long: 31.00 s > 30 s: /c/u2.wav", "u3 unreadable audio"])
    out = subprocess.run([sys.executable, str(REPO / "local/score_wer.py"), "--ref", "ref", "--hyp", "hyp",
                          "--out", "s", "--excluded", "excluded.txt"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "ref_words=2 utts=1 excluded=2 (in stage 2, not scored)" in out.stdout
    assert "--excluded excluded.txt" in (tmp_path / "s/score.json").read_text()


def test_loading_a_cut_short_record_names_utterance_and_ark(tmp_path):
    from espnet_blsp.bin.dump_feats import load_feats

    ark, scp = tmp_path / "feats.1.ark", tmp_path / "feats.1.scp"
    kaldiio.save_ark(str(ark), {"u1": np.ones((91, 80), dtype=np.float32)}, scp=str(scp))
    spec = scp.read_text().split()[1]
    assert load_feats(spec, "u1").shape == (91, 80)
    with open(ark, "r+b") as f:
        f.truncate(ark.stat().st_size - 100)
    with pytest.raises(ValueError, match=rf"^utterance u1: cannot read its features: {ark} ends at byte"):
        load_feats(spec, "u1")
