"""ASR probe (analysis/probe.py, bin/asr_probe): shapes, forward/backward, CTC decoding, the
command line on a tiny exp dir (resume, errors). Tiny random models, no training run."""

import json
import math

import pytest
import torch
import yaml

from espnet_blsp.analysis.probe import CTCProbe, ProbeVocab, ctc_loss, greedy_ctc
from espnet_blsp.bin import asr_probe
from espnet_blsp.testing.tiny_exp import make_tiny_dump, make_tiny_exp

TEXTS = ["the sun is warm today", "rain falls on the city", "we walk to the train station",
         "coffee and bread for the family", "music in the garden at night", "the river is cold",
         "a student reads a book", "the team wins the game"]


def _probe(H=64, V=10, U=2):
    torch.manual_seed(0)
    return CTCProbe(H, V, d_model=32, num_layers=2, num_heads=2, linear_units=64, dropout=0.0, upsample=U)


def test_forward_backward_shapes_and_padding():
    B, n, H, V, U = 3, 7, 64, 10, 2
    probe = _probe(H, V, U).eval()
    x, x_lens = torch.randn(B, n, H), torch.tensor([7, 5, 3])
    log_probs, lens = probe(x, x_lens)
    assert log_probs.shape == (B, U * n, V) and lens.tolist() == [14, 10, 6]  # U x the input lengths
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(B, U * n))
    # an utterance in a padded batch = the utterance alone
    alone, _ = probe(x[1:2, :5], x_lens[1:2])
    torch.testing.assert_close(log_probs[1, :10], alone[0], atol=1e-5, rtol=1e-4)
    probe.train()
    log_probs, lens = probe(x, x_lens)
    loss = ctc_loss(log_probs, lens, [[1, 2, 3], [4, 4], [5]])
    assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    for name, p in probe.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert probe.copy_emb.grad.abs().sum() > 0 and probe.proj_in.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no target tokens"):
        ctc_loss(log_probs, lens, [[1], [], [2]])
    with pytest.raises(ValueError, match="upsample must be >= 1"):
        CTCProbe(H, V, upsample=0)


def test_greedy_ctc_and_vocab_by_hand():
    V = 4
    frames = [[1, 1, 0, 1, 2, 2, 0, 3], [0, 2, 0, 0, 2, 3, 3, 3]]
    log_probs = torch.nn.functional.one_hot(torch.tensor(frames), V).float().log_softmax(-1)
    # repeats merge, blanks (0) split them and are removed; frames past the length are ignored
    assert greedy_ctc(log_probs, torch.tensor([8, 5])) == [[1, 1, 2, 3], [2, 2]]
    vocab = ProbeVocab.from_targets([[500, 7, 42], [42, 9]])
    assert len(vocab) == 5 and vocab.ids == [7, 9, 42, 500]  # 4 LLM ids + blank
    assert vocab.encode([42, 500, 7, 12345]) == [3, 4, 1]  # an unseen id cannot be emitted
    assert vocab.decode([3, 0, 4, 1]) == [42, 500, 7]


def test_probe_learns_a_toy_mapping():
    """Each input position carries its token's random vector: the probe must learn to read
    the sequence off the states (loss down, greedy output = the targets)."""
    torch.manual_seed(0)
    V, H = 6, 64
    table = torch.randn(V, H)
    seqs = [[1, 2, 3], [4, 5], [2, 2, 5, 1], [3, 1], [5, 4, 3, 2], [1, 5]]
    x = torch.nn.utils.rnn.pad_sequence([table[torch.tensor(s)] for s in seqs], batch_first=True)
    x_lens = torch.tensor([len(s) for s in seqs])
    probe = _probe(H, V)
    optim = torch.optim.AdamW(probe.parameters(), lr=5e-3)
    losses = []
    for _ in range(100):
        log_probs, lens = probe(x, x_lens)
        loss = ctc_loss(log_probs, lens, seqs)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    probe.eval()
    with torch.no_grad():
        assert greedy_ctc(*probe(x, x_lens)) == seqs


# ------------------------------------------------------------------ the command line

CONFIG = {"layers": [0, 2], "instruction": "Please repeat the following words.", "num_train_utts": 6,
          "num_test_utts": 0, "extract_batch_size": 4,
          "probe_conf": {"d_model": 32, "num_layers": 2, "num_heads": 2, "linear_units": 64, "dropout": 0.0,
                         "upsample": 2},
          "optim_conf": {"lr": 1e-3}, "warmup_steps": 2, "max_epoch": 2, "batch_size": 4, "seed": 0}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_whisper, tiny_llm):
    root = tmp_path_factory.mktemp("probe")
    exp = make_tiny_exp(root / "exp/tiny", tiny_whisper, tiny_llm)
    train = make_tiny_dump(root / "dump/train", TEXTS, seed=1)
    test = make_tiny_dump(root / "dump/test", TEXTS[:4], seed=2)
    cfg = root / "probe.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    return root, exp, train, test, cfg


def _args(setup, out, *extra):
    _, exp, train, test, cfg = setup
    return ["--exp_dir", str(exp), "--config", str(cfg), "--train_dir", str(train), "--test_dir", str(test),
            "--out_dir", str(out), "--max_new_tokens", "4", "--batch_size", "4", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def probed(setup):
    out = setup[0] / "out"
    return asr_probe.main(_args(setup, out)), out


def test_outputs(probed, setup):
    summary, out = probed
    assert sorted(summary["layers"]) == ["0", "2"] and summary["num_train_utts"] == 6
    for layer in (0, 2):
        score = json.loads((out / f"layer{layer}/score/score.json").read_text())
        assert score["num_utts"] == 4 and summary["layers"][str(layer)] == score["scores"]["wer"]
        assert len((out / f"layer{layer}/text").read_text().splitlines()) == 4
        assert torch.load(out / f"layer{layer}/checkpoint.pt", weights_only=True)["epoch"] == 2
    md = (out / "asr_probe.md").read_text()
    assert md.startswith("# ASR probe: tiny")
    assert "| WER↓ | layer 0 (adapter out) | layer 2 (final) | prompted (repeat instruction) |" in md
    row = f"| tiny | {summary['layers']['0']:.1f} | {summary['layers']['2']:.1f} | {summary['repeat_wer']:.1f} |"
    assert row in md
    # no stage-5 decoding in the exp dir: the repeat instruction was decoded here
    assert summary["repeat_source"] == str(out / "decode_asr_test/text")
    assert len((out / "decode_asr_test/text").read_text().splitlines()) == 4
    states = torch.load(out / "states_train.pt", weights_only=True)["states"]
    assert sorted(states) == [0, 2] and len(states[0]) == 6 and states[0][0].shape[-1] == 64


def test_rerun_trains_nothing_and_a_killed_layer_resumes(probed, setup, monkeypatch):
    summary, out = probed

    def fail(*a, **kw):
        raise AssertionError("trained again")
    monkeypatch.setattr(asr_probe, "train_probe", fail)
    assert asr_probe.main(_args(setup, out)) == summary
    monkeypatch.undo()
    # layer 2 "killed" after epoch 1: its checkpoint says epoch 1 and it has no score yet
    ckpt = torch.load(out / "layer2/checkpoint.pt", weights_only=True)
    ckpt["epoch"] = 1
    torch.save(ckpt, out / "layer2/checkpoint.pt")
    (out / "layer2/score/score.json").unlink()
    epochs = []
    real_save = torch.save

    def record(obj, path, *a, **kw):
        if isinstance(obj, dict) and "epoch" in obj and "optim" in obj:
            epochs.append(obj["epoch"])
        return real_save(obj, path, *a, **kw)
    monkeypatch.setattr(asr_probe.torch, "save", record)
    again = asr_probe.main(_args(setup, out))
    assert epochs == [2]  # only the missing epoch, from the checkpoint
    assert sorted(again["layers"]) == ["0", "2"]


def test_clear_errors(setup, tmp_path):
    root, exp, train, test, cfg = setup
    with pytest.raises(SystemExit, match=r"layer\(s\) \[3\] out of range: the LLM has 2 layers, so 0..2"):
        asr_probe.main(_args(setup, tmp_path / "o", "--layers", "0", "3"))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.yaml").write_text((exp / "config.yaml").read_text())
    args = _args(setup, tmp_path / "o")
    args[1] = str(bare)
    with pytest.raises(SystemExit, match=r"asr_probe: error: no checkpoint .* in .*bare"):
        asr_probe.main(args)
    no_text = tmp_path / "no_text"
    no_text.mkdir()
    (no_text / "feats.scp").write_text((train / "feats.scp").read_text())
    args = _args(setup, tmp_path / "o")
    args[args.index("--train_dir") + 1] = str(no_text)
    with pytest.raises(SystemExit, match=rf"{no_text / 'text'} not found: the training set needs the transcripts"):
        asr_probe.main(args)
    assert not (tmp_path / "o").exists()
