"""The CTC+LLM cascade (bin/cascade_asr + blsp_inference --mode cascade) on tiny random models."""

import pytest
import torch
import yaml

from espnet_blsp.bin import blsp_inference, cascade_asr
from espnet_blsp.bin.cascade_asr import CascadeASR, pool_frames
from espnet_blsp.testing.tiny_exp import make_tiny_dump, make_tiny_exp

TEXTS = ["the sun is warm today", "rain falls on the city", "we walk to the train station",
         "coffee and bread for the family", "music in the garden at night", "the river is cold"]
CONFIG = {"num_train_utts": 0, "pool": 2, "probe_conf": {"d_model": 32, "num_layers": 2, "num_heads": 2,
                                                         "linear_units": 64, "dropout": 0.0, "upsample": 1},
          "optim_conf": {"lr": 1e-3}, "warmup_steps": 2, "max_epoch": 2, "batch_size": 4, "seed": 0}


def test_pool_frames_by_hand():
    x = torch.tensor([[1.0], [3.0], [5.0], [7.0], [9.0]])
    torch.testing.assert_close(pool_frames(x, 2), torch.tensor([[2.0], [6.0], [9.0]]))  # last group: 1 frame
    assert pool_frames(x, 1) is x


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_whisper, tiny_llm):
    root = tmp_path_factory.mktemp("cascade")
    exp = make_tiny_exp(root / "exp/tiny", tiny_whisper, tiny_llm)
    train = make_tiny_dump(root / "dump/train", TEXTS, seed=1)
    test = make_tiny_dump(root / "dump/test", TEXTS[:3], seed=2)
    cfg = root / "cascade.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = root / "asr"
    cascade_asr.main(["--exp_dir", str(exp), "--config", str(cfg), "--train_dir", str(train), "--out_dir", str(out),
                      "--device", "cpu"])
    return exp, test, out


def test_cascade_decodes_the_llm_on_its_transcripts(trained, tmp_path):
    exp, test, asr_dir = trained
    assert torch.load(asr_dir / "checkpoint.pt", weights_only=True)["epoch"] == 2
    out = tmp_path / "decode_{task}_{dset}"
    blsp_inference.main(["--mode", "cascade", "--cascade_asr", str(asr_dir), "--exp_dir", str(exp),
                         "--data_dir", str(test), "--task", "asr", "continuation", "--out_dir", str(out),
                         "--max_new_tokens", "4", "--batch_size", "2", "--device", "cpu"])
    for task in ("asr", "continuation"):
        d = tmp_path / f"decode_{task}_test"
        assert len((d / "text").read_text().splitlines()) == 3
        assert (d / "asr_text").read_text() == (tmp_path / "decode_asr_test/asr_text").read_text()
    # the standalone transcripts are the CTC model's, and the LLM got exactly them
    model = blsp_inference.build_model(exp, torch.device("cpu"), None, load=False)
    cascade = CascadeASR.load(asr_dir, torch.device("cpu"))
    import kaldiio

    scp = dict(line.split(" ", 1) for line in (test / "feats.scp").read_text().splitlines())
    keys = sorted(scp)
    mats = [torch.from_numpy(kaldiio.load_mat(scp[k].strip()).copy()) for k in keys]
    expected = cascade.transcribe(model, mats, batch_size=2)
    got = dict((line.split(" ", 1) + [""])[:2] for line in (tmp_path / "decode_asr_test/asr_text").read_text().splitlines())
    assert [got[k] for k in keys] == expected
    text_out = tmp_path / "text_{task}_{dset}"
    (test / "asr_as_text").mkdir()
    (test / "asr_as_text/text").write_text("".join(f"{k} {got[k]}\n" for k in keys))
    blsp_inference.main(["--mode", "text", "--exp_dir", str(exp), "--data_dir", str(test / "asr_as_text"),
                         "--task", "asr", "--out_dir", str(text_out), "--max_new_tokens", "4", "--batch_size", "2",
                         "--device", "cpu"])
    assert (tmp_path / "text_asr_asr_as_text/text").read_text() == (tmp_path / "decode_asr_test/text").read_text()


def test_cascade_errors(trained, tmp_path):
    exp, test, _ = trained
    with pytest.raises(SystemExit, match="--mode cascade needs --cascade_asr and --exp_dir"):
        blsp_inference.main(["--mode", "cascade", "--exp_dir", str(exp), "--data_dir", str(test),
                             "--out_dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="holds no model.pt: train the cascade's ASR model first"):
        blsp_inference.main(["--mode", "cascade", "--cascade_asr", str(tmp_path), "--exp_dir", str(exp),
                             "--data_dir", str(test), "--out_dir", str(tmp_path / "o")])
