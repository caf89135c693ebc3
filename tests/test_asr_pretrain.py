"""The ASR-pretraining baseline (BLSP Sec. 2, Appendix A): its configs parse as BLSPTask
configs, and their data pipeline trains the adapter on the transcript under the repeat
instruction, from ``text`` alone (no stage 3)."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from espnet_blsp.collate import BLSPCollateFn
from espnet_blsp.preprocess import BLSPPreprocessor
from espnet_blsp.tasks.blsp import BLSPTask

REPO = Path(__file__).resolve().parents[1]
REPEAT = "Please repeat the following words."


@pytest.mark.parametrize("config", ["conf/train_asr_pretrain.yaml", "conf/mini/train_asr_pretrain.yaml"])
def test_config_trains_on_the_transcript_under_the_repeat_instruction(config, tiny_llm):
    cfg = yaml.safe_load((REPO / config).read_text())
    assert cfg["use_responses"] is False and cfg["response_from_text"] is True  # run.sh skips stage 3
    # the same model as its BLSP counterpart: only the data differs
    blsp = yaml.safe_load((REPO / config.replace("train_asr_pretrain", "train_blsp")).read_text())
    for key in ("speech_adapter", "speech_adapter_conf", "model_conf", "optim_conf", "max_epoch", "batch_size"):
        assert cfg[key] == blsp[key], key
    args = BLSPTask.get_parser().parse_args(
        ["--config", str(REPO / config), "--llm_conf", f"model_name_or_path={tiny_llm}", "--llm_conf",
         "prompt_template=blsp"])
    assert args.default_instruction == REPEAT and args.response_from_text is True
    preprocess = BLSPTask.build_preprocess_fn(args, train=True)
    out = preprocess("u1", {"speech": np.zeros((20, 80), np.float32), "text": "the sun is warm today"})
    t = preprocess.template
    assert out["response"].tolist() == out["text"].tolist() == t.text_ids("the sun is warm today")
    assert out["prefix"].tolist() == t.prefix_ids(REPEAT)


def test_response_from_text_ignores_other_responses_and_needs_text(tiny_llm):
    p = BLSPPreprocessor(tiny_llm, "blsp", default_instruction=REPEAT, response_from_text=True)
    out = p("u1", {"text": "rain falls", "response": "something else", "response_ids": np.array([5, 6])})
    assert out["response"].tolist() == p.template.text_ids("rain falls")
    with pytest.raises(ValueError, match="utterance u2: response_from_text needs the transcript"):
        p("u2", {"speech": np.zeros((20, 80), np.float32)})
    plain = BLSPPreprocessor(tiny_llm, "blsp")  # default: responses as before
    assert "response" not in plain("u3", {"text": "rain falls"})


def test_the_batch_gives_a_response_ce(tiny_whisper, tiny_llm):
    """Preprocessed + collated rows train the CE of the transcript after the repeat prompt."""
    from espnet_blsp.tasks.blsp import build_blsp_model

    p = BLSPPreprocessor(tiny_llm, "blsp", default_instruction=REPEAT, response_from_text=True)
    rng = np.random.default_rng(0)
    rows = [(f"u{i}", p(f"u{i}", {"speech": rng.standard_normal((n, 80)).astype(np.float32), "text": t}))
            for i, (n, t) in enumerate([(120, "the sun is warm"), (90, "rain falls on the city")])]
    _, batch = BLSPCollateFn(float_pad_value=0.0, int_pad_value=-1)(rows)
    torch.manual_seed(0)
    model = build_blsp_model({"model_name_or_path": tiny_whisper}, "cnn", {"bottleneck_dim": 16},
                             {"model_name_or_path": tiny_llm, "dtype": "float32"}, {"ce_weight": 1.0})
    loss, stats, _ = model(**batch)
    assert torch.isfinite(loss) and set(stats) == {"loss", "loss_ce", "acc"}
    torch.testing.assert_close(batch["response"], batch["text"])


def test_adapter_ctc_config_trains_without_the_llm(tiny_whisper, tiny_llm, monkeypatch):
    """conf/mini/train_adapter_ctc.yaml: transcripts alone (no stage 3), the embedding CTC
    alone, and the LLM never runs; the adapter and the blank get gradients."""
    from espnet_blsp.tasks.blsp import build_blsp_model

    config = REPO / "conf/mini/train_adapter_ctc.yaml"
    cfg = yaml.safe_load(config.read_text())
    assert cfg["use_responses"] is False
    args = BLSPTask.get_parser().parse_args(
        ["--config", str(config), "--llm_conf", f"model_name_or_path={tiny_llm}", "--llm_conf", "prompt_template=blsp"])
    preprocess = BLSPTask.build_preprocess_fn(args, train=True)
    rng = np.random.default_rng(0)
    rows = [(f"u{i}", preprocess(f"u{i}", {"speech": rng.standard_normal((n, 80)).astype(np.float32), "text": t}))
            for i, (n, t) in enumerate([(120, "the sun is warm"), (90, "rain falls on the city")])]
    _, batch = BLSPCollateFn(float_pad_value=0.0, int_pad_value=-1)(rows)
    torch.manual_seed(0)
    model = build_blsp_model({"model_name_or_path": tiny_whisper}, cfg["speech_adapter"], {"bottleneck_dim": 16},
                             {"model_name_or_path": tiny_llm, "dtype": "float32"}, cfg["model_conf"])
    assert not model.runs_llm
    monkeypatch.setattr(type(model.llm), "hidden_states", lambda *a, **k: pytest.fail("the LLM ran"))
    loss, stats, _ = model(**batch)
    assert torch.isfinite(loss) and set(stats) == {"loss", "loss_ctc"}
    loss.backward()
    assert model.ctc_blank.grad is not None and all(
        p.grad is not None for p in model.adapter.parameters() if p.requires_grad)
