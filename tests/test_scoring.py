"""Stage 6 scoring: metrics against hand-computed values, the CLIs, and RESULTS.md."""

import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

from espnet_blsp.scoring import metrics, results, scorers
from espnet_blsp.scoring.tables import match, read_and_match

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def cli(script, *args, cwd):
    return subprocess.run([sys.executable, str(REPO / "local" / script), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


# ----------------------------------------------------------------------------- WER

def test_wer_counts_by_hand():
    # a b c d e f -> a x c e f g: b->x (S), d deleted (D), g inserted (I); N = 6
    r = metrics.wer(["a b c d e f"], ["a x c e f g"])
    assert (r["sub"], r["del"], r["ins"], r["ref_words"]) == (1, 1, 1, 6)
    assert r["wer"] == pytest.approx(100 * 3 / 6)
    assert [op for op, _, _ in r["per_utt"][0]["ops"]] == ["=", "S", "=", "D", "=", "=", "I"]
    assert metrics.format_alignment(r["per_utt"][0]["ops"]) == [
        "REF:  a b c d e f *", "HYP:  a x c * e f g", "EVAL:   S   D     I"]


def test_wer_normalises_and_handles_empty_references():
    assert metrics.wer(["Hello, World!"], ["hello world"])["wer"] == 0.0
    assert metrics.wer(["Hello, World!"], ["hello world"], normalize=False)["sub"] == 2
    # the empty reference contributes 2 insertions and no reference words: (0 + 2) / 2
    r = metrics.wer(["", "a b"], ["x y", "a b"])
    assert (r["ins"], r["ref_words"], r["wer"]) == (2, 2, 100.0)
    assert metrics.wer([""], ["x"])["wer"] is None  # undefined, not a crash or a division by zero


# ---------------------------------------------------------------------------- BLEU

def test_bleu_by_hand():
    ref = "the quick brown fox jumps over the lazy dog"
    assert metrics.bleu([ref], [ref]) == pytest.approx(100.0)
    assert metrics.bleu([ref], ["completely unrelated words here today"]) == 0.0
    # 1-4 gram precisions 5/6, 3/5, 2/4, 1/3 and equal lengths (BP = 1)
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert metrics.bleu(["the cat sat on a mat"], ["the cat sat on the mat"]) == pytest.approx(expected, abs=1e-6)


def test_bleu_equals_sacrebleu_and_tokenizers():
    rng = random.Random(0)
    vocab = "a an the cat dog sat ran on under mat house red big".split()
    refs = [" ".join(rng.choices(vocab, k=rng.randint(4, 12))) for _ in range(20)]
    hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(vocab) for w in r.split()) for r in refs]
    assert metrics.bleu(refs, hyps, "de") == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert [metrics.bleu_tokenizer(x) for x in ("de", "zh", "ja", "en-zh")] == ["13a", "zh", "char", "zh"]
    zh_ref, zh_hyp = ["我今天很高兴见到大家"], ["我今天很高兴见到你们大家"]
    assert metrics.bleu(zh_ref, zh_hyp, "zh") == pytest.approx(
        sacrebleu.corpus_bleu(zh_hyp, [zh_ref], tokenize="zh").score)
    assert metrics.average([20.0, 30.0, 10.0]) == 20.0


# ---------------------------------------------------------------- Self-BLEU/ROUGE-L

def test_rouge_l_by_hand():
    # LCS(the cat sat on the mat, the cat is on the mat) = "the cat on the mat" = 5; P = R = 5/6
    assert metrics.rouge_l("the cat sat on the mat", "The cat is on the mat.") == pytest.approx(5 / 6)
    # LCS(a b c d, a c) = 2: P = 1, R = 1/2, F = 2 * 1 * 0.5 / 1.5 = 2/3
    assert metrics.rouge_l("a b c d", "a c") == pytest.approx(2 / 3)
    assert metrics.rouge_l("a b", "c d") == 0.0
    assert metrics.rouge_l("", "") == 1.0 and metrics.rouge_l("a", "") == 0.0
    s = metrics.self_scores(["the cat sat on the mat", "a b c d"], ["the cat is on the mat", "a c"])
    assert s["self_rouge_l"] == pytest.approx(100 * (5 / 6 + 2 / 3) / 2)
    assert metrics.self_scores(["x y z w v"], ["x y z w v"]) == {"self_bleu": pytest.approx(100.0),
                                                                 "self_rouge_l": 100.0}


def test_lcs_against_brute_force():
    rng = random.Random(1)
    for _ in range(30):
        a = rng.choices("abc", k=rng.randint(0, 6))
        b = rng.choices("abc", k=rng.randint(0, 6))
        brute = max((k for k in range(len(a) + 1) for sub in itertools.combinations(a, k)
                     if _is_subsequence(sub, b)), default=0)
        assert metrics.lcs_length(a, b) == brute


def _is_subsequence(sub, seq):
    it = iter(seq)
    return all(x in it for x in sub)


# ---------------------------------------------------------------------------- SLU

SNIPS = metrics.SLU_CLASSES["snips"]


@pytest.mark.parametrize("response,expected", [
    ("SwitchLightOff", "SwitchLightOff"),
    ("The intent is: switch light off.", "SwitchLightOff"),
    ("switchlightoff", "SwitchLightOff"),
    ("Switch light ON please", "SwitchLightOn"),
    # both SetLightColor and SetLightBrightness occur: the longer one wins
    ("SetLightColor or maybe SetLightBrightness", "SetLightBrightness"),
    ("I cannot tell", None),
    ("switch lights off", None),  # "lights" is not "light": no partial-word matches
])
def test_slu_rule_snips(response, expected):
    assert metrics.slu_prediction(response, SNIPS) == expected


def test_slu_rule_word_boundaries_and_ties():
    fsc = metrics.SLU_CLASSES["fsc"]
    assert metrics.slu_prediction("deactivate lamp", fsc) == "deactivate lamp"  # not "activate lamp"
    assert metrics.slu_prediction("Activate lamp.", fsc) == "activate lamp"
    assert metrics.slu_prediction("change language none", fsc) == "change language none"
    slue = metrics.SLU_CLASSES["slue"]
    # positive and negative have the same length: the earliest wins
    assert metrics.slu_prediction("It is negative rather than positive.", slue) == "negative"
    assert metrics.slu_prediction("Not neutral; negative.", slue) == "negative"  # longest wins over earliest


def test_slu_accuracy_and_bad_labels():
    labels = ["SwitchLightOff", "switch light on", "SetLightColor", "DecreaseBrightness"]
    hyps = ["switch light off", "SwitchLightOn", "no idea", "IncreaseBrightness"]
    d = metrics.slu_details(labels, hyps, SNIPS)
    assert d["acc"] == 50.0 and d["no_match"] == 1 and d["pred"][2] is None
    with pytest.raises(ValueError, match="u2:'TurnOnTheRadio'"):
        metrics.slu_details(["SwitchLightOn", "TurnOnTheRadio"], ["a", "b"], SNIPS, keys=["u1", "u2"])
    with pytest.raises(ValueError, match="unknown SLU task"):
        metrics.slu_classes("atis")


def test_slu_classes_are_those_of_the_decoding_instructions():
    from espnet_blsp.bin.blsp_inference import TASKS

    for task, classes in metrics.SLU_CLASSES.items():
        for c in classes:
            assert c in TASKS[task], (task, c)


# -------------------------------------------------------------------- id matching

def test_match_errors_and_allow_missing(tmp_path):
    ref = {"u1": "a", "u2": "b", "u3": "c"}
    with pytest.raises(ValueError, match="were neither decoded nor excluded in stage 2: u2 u3"):
        match(ref, {"u1": "a"})
    with pytest.raises(ValueError, match="not in reference, e.g. u9"):
        match(ref, {"u1": "a", "u9": "z"}, allow_missing=True)
    m = match(ref, {"u1": "a"}, allow_missing=True)
    assert m.keys == ["u1", "u2", "u3"] and m.hyps == ["a", "", ""] and m.missing == ["u2", "u3"]
    bad = tmp_path / "hyp"
    bad.write_bytes(b"u1 ok\nu2 \xff\xfe bad\n")
    with pytest.raises(ValueError, match=rf"{bad}:2: not UTF-8"):
        read_and_match(write(tmp_path / "ref", ["u1 a", "u2 b"]), bad)


# ---------------------------------------------------------------------------- CLIs

def test_cli_wer_writes_score_json(tmp_path):
    ref = write(tmp_path / "data/test/text", ["u1 a b c d e f", "u2 Hello, world!", "u3"])
    hyp = write(tmp_path / "exp/x/decode_asr_test/text", ["u1 a x c e f g", "u2 hello world", "u3 oops"])
    out = cli("score_wer.py", "--ref", "data/test/text", "--hyp", "exp/x/decode_asr_test/text",
              "--out", "exp/x/decode_asr_test/score", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "exp/x/decode_asr_test/score/score.json").read_text())
    # S=1 D=1 I=1 (u1) + I=1 (u3, empty reference); N = 6 + 2
    assert r["scores"] == {"wer": pytest.approx(100 * 4 / 8), "sub": 1, "del": 1, "ins": 2, "ref_words": 8}
    assert r["num_utts"] == 3 and r["num_missing"] == 0 and r["metric"] == "wer"
    assert "score_wer.py --ref data/test/text --hyp exp/x/decode_asr_test/text" in r["command"]
    assert "wer=50.00" in out.stdout and len(out.stdout.strip().splitlines()) == 1
    text = (tmp_path / "exp/x/decode_asr_test/score/result.txt").read_text()
    assert "HYP:  a x c * e f g" in text
    assert ref.exists() and hyp.exists()


def test_cli_missing_and_extra_ids(tmp_path):
    write(tmp_path / "ref", ["u1 a b", "u2 c d", "u3 e"])
    write(tmp_path / "hyp", ["u1 a b"])
    out = cli("score_wer.py", "--ref", "ref", "--hyp", "hyp", "--out", "s", cwd=tmp_path)
    assert out.returncode != 0 and "u2 u3" in out.stderr and "--allow_missing" in out.stderr
    assert not (tmp_path / "s/score.json").exists()
    out = cli("score_wer.py", "--ref", "ref", "--hyp", "hyp", "--out", "s", "--allow_missing", cwd=tmp_path)
    r = json.loads((tmp_path / "s/score.json").read_text())
    assert out.returncode == 0 and r["num_missing"] == 2 and r["scores"]["del"] == 3
    write(tmp_path / "hyp2", ["u1 a b", "u2 c d", "u3 e", "u4 x"])
    out = cli("score_self.py", "--ref", "ref", "--hyp", "hyp2", "--out", "s2", cwd=tmp_path)
    assert out.returncode != 0 and "u4" in out.stderr


def test_cli_bleu_two_directions(tmp_path):
    write(tmp_path / "de/ref", ["u1 die katze sitzt auf der matte", "u2 ein zwei drei vier"])
    write(tmp_path / "de/hyp", ["u1 die katze sitzt auf der matte", "u2 ein zwei drei vier"])
    write(tmp_path / "fr/ref", ["u1 le chat est sur le tapis"])
    write(tmp_path / "fr/hyp", ["u1 rien du tout ici maintenant"])
    out = cli("score_bleu.py", "--ref", "de/ref", "--hyp", "de/hyp", "--lang", "de", "--name", "en-de",
              "--ref", "fr/ref", "--hyp", "fr/hyp", "--lang", "fr", "--name", "en-fr", "--out", "s", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "s/score.json").read_text())
    assert r["scores"]["bleu_en-de"] == pytest.approx(100.0) and r["scores"]["bleu_en-fr"] == 0.0
    assert r["scores"]["bleu"] == pytest.approx(50.0)  # the plain mean over directions
    assert r["directions"]["en-de"]["tokenize"] == "13a" and r["num_utts"] == 3
    bad = cli("score_bleu.py", "--ref", "de/ref", "--hyp", "de/hyp", "--out", "s", cwd=tmp_path)
    assert bad.returncode != 0 and "--lang" in bad.stderr


def test_cli_slu_and_self(tmp_path):
    write(tmp_path / "label", ["u1 SwitchLightOff", "u2 SetLightColor", "u3 SwitchLightOn"])
    write(tmp_path / "hyp", ["u1 The intent is switch light off.", "u2 SetLightBrightness", "u3 switch light on"])
    out = cli("score_slu.py", "--task", "snips", "--ref", "label", "--hyp", "hyp", "--out", "s", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "s/score.json").read_text())
    assert r["scores"]["acc"] == pytest.approx(200 / 3) and r["scores"]["correct"] == 2
    assert "u2\t0\tSetLightColor\tSetLightBrightness" in (tmp_path / "s/result.txt").read_text()
    write(tmp_path / "t_ref", ["u1 the cat sat on the mat", "u2 a b c d"])
    write(tmp_path / "t_hyp", ["u1 the cat is on the mat", "u2 a c"])
    out = cli("score_self.py", "--ref", "t_ref", "--hyp", "t_hyp", "--out", "s3", cwd=tmp_path)
    r = json.loads((tmp_path / "s3/score.json").read_text())
    assert out.returncode == 0 and r["scores"]["self_rouge_l"] == pytest.approx(100 * (5 / 6 + 2 / 3) / 2)


# ---------------------------------------------------------------------- RESULTS.md

def fake_score(d: Path, metric, primary, scores, num_missing=0):
    d.mkdir(parents=True, exist_ok=True)
    (d / "score.json").write_text(json.dumps(dict(metric=metric, primary=primary, scores=scores, num_utts=10,
                                                  num_missing=num_missing, command=f"python local/score_{metric}.py")))


def test_results_table_from_fake_tree(tmp_path):
    exp = tmp_path / "exp/blsp"
    base = exp / "baselines"
    fake_score(base / "text_llm/decode_asr_test_clean/score", "wer", "wer", {"wer": 0.0})
    fake_score(base / "whisper_llm/decode_asr_test_clean/score", "wer", "wer", {"wer": 5.6})
    fake_score(base / "whisper_llm/decode_asr_test_clean/score_whisper", "wer", "wer", {"wer": 3.4})
    fake_score(exp / "decode_asr_test_clean/score", "wer", "wer", {"wer": 10.44}, num_missing=2)
    for sysdir, b in ((base / "text_llm", (30.0, 20.0)), (exp, (14.0, 12.0))):
        fake_score(sysdir / "decode_st_covost_de/score", "bleu", "bleu", {"bleu": b[0]})
        fake_score(sysdir / "decode_st_mustc_de/score", "bleu", "bleu", {"bleu": b[1]})
    fake_score(exp / "decode_st_covost_de/score_self", "self", "self_bleu", {"self_bleu": 40.0, "self_rouge_l": 1})
    fake_score(exp / "decode_snips_snips_test/score", "slu_acc", "acc", {"acc": 75.8})
    fake_score(exp / "decode_qa_giga/score", "self", "self_bleu", {"self_bleu": 42.4, "self_rouge_l": 64.0})
    fake_score(base / "untrained/decode_asr_test_clean/score", "wer", "wer", {"wer": 100.0})
    (exp / "decode_bogus_x").mkdir()  # not a known task: skipped with a warning
    other = tmp_path / "exp/kd5"
    fake_score(other / "decode_asr_test_clean/score", "wer", "wer", {"wer": 9.5})
    warnings = []
    systems = results.make_systems([exp], [("BLSP-KD5", other)], warn=warnings.append)
    assert [s.name for s in systems] == ["Text+LLM", "Whisper+LLM", "blsp", "BLSP-KD5", "untrained adapter"]
    assert any("bogus" in w for w in warnings)
    header, rows, notes = results.build_table(systems)
    assert header == ["system", "ASR WER↓ test_clean", "ST BLEU↑ covost_de", "ST Self-BLEU↑ covost_de",
                      "ST BLEU↑ mustc_de", "SNIPS ACC↑ snips_test", "QA Self-BLEU / Self-ROUGE-L↑ giga",
                      "ST BLEU↑ avg"]
    table = {r[0]: r[1:] for r in rows}
    assert table["Text+LLM"] == ["0.0", "30.0", "-", "20.0", "-", "-", "25.0"]
    assert table["Whisper+LLM"][0] == "3.4 / 5.6"  # standalone Whisper / via the LLM
    assert table["blsp"] == ["10.4 †", "14.0", "40.0", "12.0", "75.8", "42.4 / 64.0", "13.0"]
    assert table["BLSP-KD5"] == ["9.5", "-", "-", "-", "-", "-", "-"]
    assert any("standalone Whisper" in n for n in notes) and any("†" in n for n in notes)
    text = results.render(systems, "blsp", "python local/make_results.py --exp exp/blsp", [exp],
                          env={"date": "today", "host": "h"})
    assert "| Text+LLM | 0.0 | 30.0 | - | 20.0 | - | - | 25.0 |" in text
    assert "- host: h" in text and "python local/make_results.py --exp exp/blsp" in text
    _, rows, _ = results.build_table(systems, tasks=["asr"], test_sets=["test_clean"])
    assert [r[1] for r in rows] == ["0.0", "3.4 / 5.6", "10.4 †", "9.5", "100.0"]
    assert results.parse_decode_dir("decode_st_covost_en_de") == ("st", "covost_en_de")
    with pytest.raises(ValueError, match="unknown task"):
        results.parse_decode_dir("decode_foo_bar")


def test_make_results_scores_a_tree(tmp_path):
    write(tmp_path / "data/test/text", ["u1 the cat sat on the mat", "u2 hello world"])
    write(tmp_path / "data/test/label", ["u1 positive", "u2 negative"])
    exp = tmp_path / "exp/tiny"
    for sysdir, asr, cont, slue in (
            (exp / "baselines/text_llm", "the cat sat on the mat", ["a story about a cat", "hello there"], "Positive."),
            (exp, "the cat sat on a mat", ["a story about a dog", "hello"], "I would say neutral")):
        write(sysdir / "decode_asr_test/text", [f"u1 {asr}", "u2 hello world"])
        write(sysdir / "decode_continuation_test/text", [f"u1 {cont[0]}", f"u2 {cont[1]}"])
        write(sysdir / "decode_slue_test/text", [f"u1 {slue}", "u2 negative"])
    write(exp / "decode_st_test/text", ["u1 x"])  # no data/test/translation: skipped, not an error
    out = cli("make_results.py", "--exp", "exp/tiny", "--score", "--data_root", "data", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "no reference" in out.stderr
    text = (exp / "RESULTS.md").read_text()
    assert "| Text+LLM | 0.0 | 100.0 | 100.0 / 100.0 |" in text  # the ST column has no score: dropped
    # WER 1/8 = 12.5; ROUGE-L: u1 LCS "a story about a" = 4 of 5 words -> 0.8,
    # u2 "hello" vs "hello there": P = 1, R = 1/2 -> 2/3
    assert "| tiny | 12.5 | 50.0 | " in text and f" / {100 * (0.8 + 2 / 3) / 2:.1f} |" in text
    assert json.loads((exp / "decode_asr_test/score/score.json").read_text())["scores"]["sub"] == 1
    # an interrupted decoding is a problem: listed, its cell reads "error", the exit code is 1
    write(exp / "decode_asr_test/text", ["u1 the cat"])
    out = cli("make_results.py", "--exp", "exp/tiny", "--score", "--data_root", "data", cwd=tmp_path)
    assert out.returncode == 1 and "u2" in out.stderr
    text = (exp / "RESULTS.md").read_text()
    assert "| tiny | error |" in text and "## Problems" in text
    bad = cli("make_results.py", "--exp", "exp/none", cwd=tmp_path)
    assert bad.returncode != 0 and "exp/none" in bad.stderr


def test_scorers_record_equivalent_command(tmp_path):
    write(tmp_path / "ref", ["u1 a"])
    write(tmp_path / "hyp", ["u1 a"])
    r = scorers.score_wer(tmp_path / "ref", tmp_path / "hyp", tmp_path / "s")
    assert r["command"] == f"python local/score_wer.py --ref {tmp_path}/ref --hyp {tmp_path}/hyp --out {tmp_path}/s"
