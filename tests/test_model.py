"""BLSPModel: losses per config, batch invariance, trainable-only checkpoints, bad input."""

import pytest
import torch

from espnet_blsp.tasks.blsp import build_blsp_model

CONFIGS = {
    "blsp_ce": ("cnn", {"bottleneck_dim": 16}, {"ce_weight": 1.0}, None),
    "kd1_cnn_kl": ("cnn", {"bottleneck_dim": 16}, {"ce_weight": 0.0, "kl_resp_weight": 1.0}, None),
    "blsp_ce_ctc": ("cnn", {"bottleneck_dim": 16}, {"ce_weight": 1.0, "ctc_weight": 1.0}, None),
    "ctc_only": ("cnn", {"bottleneck_dim": 16}, {"ce_weight": 0.0, "ctc_weight": 1.0}, None),
    "kd5_cformer": (
        "cformer", {"num_pre_layers": 1, "num_post_layers": 1, "dropout_rate": 0.0},
        {"ce_weight": 0.0, "kl_resp_weight": 1.0, "kl_input_weight": 1.0, "cif_weight": 1.0}, None,
    ),
    "kd7_lora": (
        "cformer", {"num_pre_layers": 1, "num_post_layers": 1, "dropout_rate": 0.0},
        {"ce_weight": 0.0, "kl_resp_weight": 1.0, "kl_input_weight": 1.0, "cif_weight": 1.0},
        {"r": 4, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    ),
}
EXPECTED_STATS = {
    "blsp_ce": {"loss", "loss_ce", "acc"},
    "kd1_cnn_kl": {"loss", "loss_kl_resp", "acc"},
    "blsp_ce_ctc": {"loss", "loss_ce", "loss_ctc", "acc"},
    "ctc_only": {"loss", "loss_ctc"},
    "kd5_cformer": {"loss", "loss_kl_resp", "loss_kl_input", "loss_cif", "acc", "acc_input"},
    "kd7_lora": {"loss", "loss_kl_resp", "loss_kl_input", "loss_cif", "acc", "acc_input"},
}


def build(name, whisper, llm, freeze_encoder=True):
    adapter, aconf, mconf, lora = CONFIGS[name]
    torch.manual_seed(0)
    return build_blsp_model(
        {"model_name_or_path": whisper, "freeze": freeze_encoder},
        adapter, aconf, {"model_name_or_path": llm, "dtype": "float32", "lora_conf": lora}, mconf,
    )


def make_batch(model, texts, responses, frames):
    t = model.llm.template
    pad = lambda xs: (  # noqa: E731
        torch.nn.utils.rnn.pad_sequence([torch.tensor(x) for x in xs], batch_first=True, padding_value=-1),
        torch.tensor([len(x) for x in xs]),
    )
    g = torch.Generator().manual_seed(0)
    speech = torch.randn(len(texts), max(frames), 80, generator=g)
    batch = dict(speech=speech, speech_lengths=torch.tensor(frames))
    for name, seqs in (
        ("text", [t.text_ids(x) for x in texts]),
        ("prefix", [t.prefix_ids("Continue the text.")] * len(texts)),
        ("suffix", [t.suffix_ids()] * len(texts)),
        ("response", [t.text_ids(x) for x in responses]),
    ):
        batch[name], batch[f"{name}_lengths"] = pad(seqs)
    batch["utt_id"] = [f"utt{i}" for i in range(len(texts))]
    return batch


def _slice(batch, i):
    out = {}
    for k, v in batch.items():
        if k == "utt_id":
            out[k] = [v[i]]
        elif k.endswith("_lengths"):
            out[k] = v[i : i + 1]
    for k, v in batch.items():
        if k != "utt_id" and not k.endswith("_lengths"):
            out[k] = v[i : i + 1, : int(batch[f"{k}_lengths"][i])]
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_backward_stats(name, tiny_whisper, tiny_llm):
    model = build(name, tiny_whisper, tiny_llm)
    batch = make_batch(model, ["the sun is warm", "rain in the city today"], ["and bright", "so we stay home"], [200, 330])
    model.train()
    loss, stats, weight = model(**batch)
    assert set(stats) == EXPECTED_STATS[name]
    assert int(weight) == 2 and torch.isfinite(loss)
    loss.backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("adapter.") or "lora_" in n or n == "ctc_blank" for n in trainable)
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "adapter" in n)


@pytest.mark.parametrize("name", ["blsp_ce", "kd5_cformer"])
def test_batched_loss_equals_single(name, tiny_whisper, tiny_llm):
    model = build(name, tiny_whisper, tiny_llm).eval()
    batch = make_batch(model, ["the sun is warm", "rain"], ["and bright", "so we stay home today"], [150, 330])
    with torch.no_grad():
        _, stats, _ = model(**batch)
        singles = [model(**_slice(batch, i))[1] for i in range(2)]
    # per-utterance KD/CIF terms are means over rows; compare the row-weighted means
    key = "loss_ce" if name == "blsp_ce" else "loss_cif"
    expected = (singles[0][key] + singles[1][key]) / 2 if key == "loss_cif" else None
    if key == "loss_cif":
        assert torch.allclose(stats[key], expected, atol=1e-5)
    n = [int(batch["response_lengths"][i]) + 1 for i in range(2)]
    if name == "blsp_ce":
        weighted = sum(singles[i]["loss_ce"] * n[i] for i in range(2)) / sum(n)
        assert torch.allclose(stats["loss_ce"], weighted, atol=1e-5)
    else:
        weighted = sum(singles[i]["loss_kl_resp"] * n[i] for i in range(2)) / sum(n)
        assert torch.allclose(stats["loss_kl_resp"], weighted, atol=1e-5)


def test_ctc_only_does_not_run_the_llm(tiny_whisper, tiny_llm, monkeypatch):
    """CIF/CTC-only steps (adapter pretraining) skip the LLM forward; the loss is the CTC of
    the adapter outputs alone, the same as in the mini default's step with the CE beside it."""
    from espnet_blsp.losses import embedding_ctc

    ctc, full = build("ctc_only", tiny_whisper, tiny_llm), build("blsp_ce_ctc", tiny_whisper, tiny_llm)
    assert not ctc.runs_llm and full.runs_llm
    full.load_state_dict(ctc.state_dict())
    batch = make_batch(ctc, ["the sun is warm", "rain in the city today"], ["and bright", "so we"], [200, 330])
    ctc.eval(), full.eval()
    with torch.no_grad():
        y, y_lens, _ = ctc.encode(batch["speech"], batch["speech_lengths"])
        want = embedding_ctc(y, y_lens, ctc.llm.model.get_input_embeddings().weight, ctc.ctc_blank,
                             batch["text"], batch["text_lengths"])
        _, full_stats, _ = full(**batch)
    calls = []
    monkeypatch.setattr(type(ctc.llm), "hidden_states", lambda self, *a, **k: calls.append(1))
    with torch.no_grad():
        loss, stats, _ = ctc(**batch)
    assert calls == [] and set(stats) == {"loss", "loss_ctc"}
    assert torch.allclose(loss, want) and torch.allclose(stats["loss_ctc"], full_stats["loss_ctc"])


def test_checkpoint_holds_trainable_only_and_reloads(tiny_whisper, tiny_llm, tmp_path):
    model = build("kd7_lora", tiny_whisper, tiny_llm, freeze_encoder=False)
    sd = model.state_dict()
    assert any(k.startswith("adapter.") for k in sd) and any("lora_A" in k for k in sd)
    assert any(k.startswith("encoder.") for k in sd)  # unfrozen encoder (variants 6, 7)
    assert not any(k.startswith("llm.") and "lora_" not in k for k in sd)
    for p in model.adapter.parameters():
        torch.nn.init.normal_(p)
    torch.save(model.state_dict(), tmp_path / "ckpt.pth")
    fresh = build("kd7_lora", tiny_whisper, tiny_llm, freeze_encoder=False)
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pth"))
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k])
    with pytest.raises(RuntimeError, match="missing trainable"):
        fresh.load_state_dict({})


def test_llm_keeps_its_dtype_when_trainer_casts(tiny_whisper, tiny_llm):
    torch.manual_seed(0)
    model = build_blsp_model(
        {"model_name_or_path": tiny_whisper}, "cnn", {"bottleneck_dim": 8},
        {"model_name_or_path": tiny_llm, "dtype": "bfloat16"}, {"ce_weight": 1.0},
    )
    model.to(dtype=torch.float32, device="cpu")  # what ESPnet's trainer does
    assert model.llm.dtype == torch.bfloat16
    assert next(model.adapter.parameters()).dtype == torch.float32


def test_bad_input_names_the_utterance(tiny_whisper, tiny_llm):
    model = build("blsp_ce", tiny_whisper, tiny_llm)
    batch = make_batch(model, ["the sun", "rain"], ["ok", "no"], [100, 100])
    batch["text_lengths"] = torch.tensor([2, 0])
    with pytest.raises(ValueError, match="utt1.*empty transcript"):
        model(**batch)
    batch = make_batch(model, ["the sun", "rain"], ["ok", "no"], [100, 3001])
    with pytest.raises(ValueError, match="utt1.*30 s"):
        model(**batch)
    model.max_context = 20
    batch = make_batch(model, ["the sun is warm and bright", "rain"], ["ok", "no"], [100, 100])
    with pytest.raises(ValueError, match="overflows the LLM context.*utt0"):
        model(**batch)


def test_kd_without_ce_takes_acc_from_the_response_kl(tiny_whisper, tiny_llm, monkeypatch):
    """ce_weight 0 + response KL: no separate CE pass over the LM head, the same accuracy."""
    import espnet_blsp.espnet_model as em

    model = build("kd1_cnn_kl", tiny_whisper, tiny_llm).eval()
    batch = make_batch(model, ["the sun is warm", "rain falls"], ["and", "on"], [120, 90])
    # responses = the model's own greedy continuation, so that accuracy is far from 0
    t = model.llm.template
    with torch.no_grad():
        y, y_lens, _ = model.encode(batch["speech"], batch["speech_lengths"])
        greedy = model.llm.generate(
            [torch.tensor(t.prefix_ids("Continue the text."))] * 2, [y[i, : y_lens[i]] for i in range(2)],
            [torch.tensor(t.suffix_ids())] * 2, max_new_tokens=5,
        )
    batch["response"] = torch.nn.utils.rnn.pad_sequence([torch.tensor(g) for g in greedy], batch_first=True, padding_value=-1)
    batch["response_lengths"] = torch.tensor([len(g) for g in greedy])
    with torch.no_grad():
        _, stats_kl, _ = model(**batch)
        model.ce_weight, model.kl_resp_weight = 1.0, 0.0  # now only the CE path can give acc
        _, stats_ce, _ = model(**batch)
    assert float(stats_kl["acc"]) > 0.5
    assert float(stats_kl["acc"]) == pytest.approx(float(stats_ce["acc"]))
    model.ce_weight, model.kl_resp_weight = 0.0, 1.0
    monkeypatch.setattr(em, "response_ce", lambda *a, **k: pytest.fail("response_ce was called"))
    with torch.no_grad():
        model(**batch)


def test_precomputed_encoder_refuses_a_trainable_encoder(tiny_whisper, tiny_llm):
    """--dump_encoder_output bypasses the encoder: with variants 6/7 it would never train."""
    with pytest.raises(ValueError, match="bypasses the speech encoder"):
        build_blsp_model(
            {"model_name_or_path": tiny_whisper, "freeze": False}, "cnn", {"bottleneck_dim": 16},
            {"model_name_or_path": tiny_llm, "dtype": "float32"}, {"ce_weight": 1.0, "precomputed_encoder": True},
        )
    build_blsp_model(  # frozen: fine
        {"model_name_or_path": tiny_whisper, "freeze": True}, "cnn", {"bottleneck_dim": 16},
        {"model_name_or_path": tiny_llm, "dtype": "float32"}, {"ce_weight": 1.0, "precomputed_encoder": True},
    )


def _spy_adapter_outputs(model, monkeypatch):
    """Keep the adapter outputs y (B, N, H) of the next forward, with their .grad retained."""
    kept = []
    encode = model.encode

    def spy(*args, **kwargs):
        y, y_lens, aux = encode(*args, **kwargs)
        y.retain_grad()
        kept.append((y, y_lens))
        return y, y_lens, aux

    monkeypatch.setattr(model, "encode", spy)
    return kept


@pytest.mark.parametrize("with_response", [True, False])
def test_input_kl_reaches_every_cif_output(tiny_whisper, tiny_llm, monkeypatch, with_response):
    """Input KL alone: each of the n CIF outputs of each utterance gets a gradient, the last one
    s_n included (its row P+n-1 is an input-KL row; before, the rows stopped at P+n-2)."""
    model = build("kd5_cformer", tiny_whisper, tiny_llm)
    model.kl_resp_weight, model.cif_weight = 0.0, 0.0  # only the input KL
    batch = make_batch(model, ["the sun is warm", "rain in the city today"], ["and bright", "so we stay"], [200, 330])
    if not with_response:
        del batch["response"], batch["response_lengths"]
    kept = _spy_adapter_outputs(model, monkeypatch)
    model.train()
    loss, stats, _ = model(**batch)
    assert set(stats) >= {"loss", "loss_kl_input"} and "loss_kl_resp" not in stats
    loss.backward()
    (y, y_lens), = kept
    assert y_lens.tolist() == batch["text_lengths"].tolist()  # one output per transcript token
    for b, n in enumerate(y_lens.tolist()):
        per_vector = y.grad[b, :n].abs().sum(-1)  # (n,)
        assert (per_vector > 0).all(), f"utterance {b}: CIF outputs without gradient: {per_vector}"
        assert not y.grad[b, n:].any()  # padding gets none


@pytest.mark.parametrize("with_response", [True, False])
def test_input_kl_only_sees_no_prompt(tiny_whisper, tiny_llm, monkeypatch, with_response):
    """Variant 4 (conf/train_blsp_kd4.yaml: CIF + input KL): no instruction, suffix or response
    in either sequence, only the template's turn opening + the middle (BLSP-KD Sec. 4.2)."""
    model = build("kd5_cformer", tiny_whisper, tiny_llm)
    model.kl_resp_weight = 0.0  # kd4: ce 0, response KL 0, input KL 1, CIF 1
    t = model.llm.template
    start = t.start_ids()
    assert start == [model.llm.tokenizer.bos_token_id] + t.text_ids("###[Human]:")  # blsp template
    batch = make_batch(model, ["the sun is warm", "rain in the city today"], ["and bright", "so we stay"], [200, 330])
    if not with_response:
        del batch["response"], batch["response_lengths"]
    seen, calls = [], []
    build_inputs = model.llm.build_inputs

    def spy(prefix, middle, suffix, response=None, **kwargs):
        calls.append((prefix, middle, suffix, response))
        seen.append(build_inputs(prefix, middle, suffix, response, **kwargs))
        return seen[-1]

    monkeypatch.setattr(model.llm, "build_inputs", spy)
    model.train()
    loss, stats, _ = model(**batch)
    assert set(stats) == {"loss", "loss_kl_input", "loss_cif", "acc_input"}
    n = batch["text_lengths"]  # (B,) transcript tokens = CIF outputs
    for prefix, middle, suffix, response in calls:  # student, then teacher
        assert [p.tolist() for p in prefix] == [start, start]  # no instruction
        assert [len(x) for x in suffix] == [0, 0] and response is None
        assert [len(m) for m in middle] == n.tolist()
    assert [m.tolist() for m in calls[1][1]] == [batch["text"][i, :k].tolist() for i, k in enumerate(n.tolist())]
    student, teacher = seen
    for b in (student, teacher):
        # P + n positions: the turn opening and the middle, nothing after it
        assert b.lengths.tolist() == (len(start) + n).tolist()
        assert (b.targets == -100).all()  # no response
        assert b.input_mask.sum(1).tolist() == n.tolist()  # the input KL on all n positions
        for i, m in enumerate(n.tolist()):
            assert b.input_mask[i].nonzero().flatten().tolist() == list(range(len(start), len(start) + m))
    assert student.speech_mask.equal(student.input_mask) and not teacher.speech_mask.any()
    loss.backward()

    # with a response term the full prompt comes back: prefix (instruction) + middle + suffix + response + EOS
    if with_response:
        seen.clear()
        calls.clear()
        model.kl_resp_weight = 1.0
        model(**batch)
        lengths = batch["prefix_lengths"] + n + batch["suffix_lengths"] + batch["response_lengths"] + 1
        assert seen[0].lengths.tolist() == lengths.tolist()


def test_exponent_form_numbers_of_conf_options_become_floats():
    """YAML 1.1 reads "lr=2e-3" (no dot) as the string '2e-3', which AdamW rejects with a
    TypeError deep inside torch; BLSPTask.main turns such strings of every *_conf into floats."""
    from espnet_blsp.tasks.blsp import BLSPTask, coerce_exponent_floats

    args = BLSPTask.get_parser().parse_args(
        ["--optim_conf", "lr=2e-3", "--scheduler_conf", "max_lr=2E-3", "--model_conf", "temperature=2.0"]
    )
    assert args.optim_conf["lr"] == "2e-3"  # what ESPnet's parser gives
    conf = coerce_exponent_floats({"optim_conf": args.optim_conf, "x": ["1e5", "v2e3", "2e-3x", 3]})
    assert conf == {"optim_conf": {"lr": 0.002}, "x": [100000.0, "v2e3", "2e-3x", 3]}
    assert coerce_exponent_floats(args.scheduler_conf) == {"max_lr": 0.002}
    assert coerce_exponent_floats(args.model_conf)["temperature"] == 2.0
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], **conf["optim_conf"])  # no TypeError
