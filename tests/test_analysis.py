"""Representation analysis (bin/analyze): the extraction position, the similarity arithmetic,
the outputs, and the errors. Tiny random models; the "trained" checkpoint is the seeded init
moved by noise (espnet_blsp.testing.tiny_exp), so no training runs."""

import json
import math
import shutil
import struct

import numpy as np
import pytest
import torch

from espnet_blsp.analysis import representations as reps
from espnet_blsp.analysis.similarity import (
    cosine, instruction_similarity, layerwise, off_diagonal_mean, paired_similarity,
)
from espnet_blsp.bin import analyze
from espnet_blsp.bin.blsp_inference import build_model
from espnet_blsp.testing.tiny_exp import make_tiny_dump, make_tiny_exp

TEXTS = ["the sun is warm today", "rain falls on the city", "we walk to the train station",
         "coffee and bread for the family", "music in the garden at night", "the river is cold"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_whisper, tiny_llm):
    root = tmp_path_factory.mktemp("analysis")
    exp = make_tiny_exp(root / "exp/tiny", tiny_whisper, tiny_llm)
    dump = make_tiny_dump(root / "dump/test", TEXTS)
    return root, exp, dump


@pytest.fixture(scope="module")
def model(setup):
    _, exp, _ = setup
    return build_model(exp, torch.device("cpu"), None, load=True)


def _feats(dump):
    import kaldiio

    scp = dict(line.split(" ", 1) for line in (dump / "feats.scp").read_text().splitlines())
    return [torch.from_numpy(kaldiio.load_mat(scp[k].strip()).copy()) for k in sorted(scp)]


# ------------------------------------------------------------------ extraction position

def test_speech_state_is_the_last_prompt_position(setup, model):
    """Batched speech states = each utterance alone, read at P + n + S - 1 of its prompt; that
    state's argmax is the first token greedy decoding emits; layer 0 there is the embedding of
    the last suffix token."""
    _, _, dump = setup
    feats = _feats(dump)
    llm, instr = model.llm, reps.INSTRUCTIONS["SR"]
    got = reps.speech_states(model, feats, instr, batch_size=4)  # (L+1, N, H), two batches
    L = llm.num_layers
    assert got.shape == (L + 1, len(TEXTS), llm.hidden_size)
    prefix = torch.tensor(llm.template.prefix_ids(instr))
    suffix = torch.tensor(llm.template.suffix_ids())
    with torch.no_grad():
        for i, f in enumerate(feats):
            y, y_lens, _ = model.encode(f[None], torch.tensor([f.shape[0]]))
            n = int(y_lens[0])
            batch = llm.build_inputs([prefix], [y[0, :n]], [suffix], None)
            states = llm.layer_states(batch)
            last = len(prefix) + n + len(suffix) - 1
            assert int(batch.lengths[0]) == last + 1
            for layer in (0, L):
                torch.testing.assert_close(got[layer, i], states[layer][0, last], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(states[L][0, last], llm.hidden_states(batch)[0, last], atol=1e-5, rtol=1e-4)
            first = model.generate(f[None], torch.tensor([f.shape[0]]), [prefix], [suffix], max_new_tokens=1)[0]
            if first:  # an empty hypothesis means EOS came first: the argmax is EOS
                assert int((llm.lm_head_weight @ got[L, i]).argmax()) == first[0]
            else:
                assert int((llm.lm_head_weight @ got[L, i]).argmax()) == llm.template.eos_id
    emb = llm.embed(suffix[-1:])[0]
    torch.testing.assert_close(got[0], emb.expand(len(TEXTS), -1))


def test_text_state_is_the_last_prompt_position_and_ignores_the_adapter(setup, model):
    _, exp, _ = setup
    llm, instr = model.llm, reps.INSTRUCTIONS["CW"]
    got = reps.text_states(llm, TEXTS, instr, batch_size=4)
    prefix = llm.template.prefix_ids(instr)
    suffix = llm.template.suffix_ids()
    with torch.no_grad():
        for i, t in enumerate(TEXTS):
            ids = prefix + llm.template.text_ids(t) + suffix
            h = llm.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
            torch.testing.assert_close(got[-1, i], h[-1][0, len(ids) - 1], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(got[1, i], h[1][0, len(ids) - 1], atol=1e-5, rtol=1e-4)
    untrained = build_model(exp, torch.device("cpu"), None, load=False)
    torch.testing.assert_close(reps.text_states(untrained.llm, TEXTS, instr), got)
    # speech and text differ, and the speech states depend on the adapter
    feats = _feats(setup[2])
    s_trained = reps.speech_states(model, feats, instr)
    s_untrained = reps.speech_states(untrained, feats, instr)
    assert not torch.allclose(s_trained[-1], got[-1], atol=1e-3)
    assert not torch.allclose(s_trained[-1], s_untrained[-1], atol=1e-3)


# ------------------------------------------------------------------ similarity arithmetic

def test_cosine_by_hand():
    assert cosine([1.0, 0.0], [0.0, 1.0]) == pytest.approx(0.0)
    assert cosine([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine([3.0, 4.0], [6.0, 8.0]) == pytest.approx(1.0)
    assert cosine([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="zero vector"):
        cosine([0.0, 0.0], [1.0, 0.0])


def test_paired_and_instruction_similarity_by_hand():
    speech = np.array([[1.0, 0.0], [1.0, 1.0]])
    text = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert paired_similarity(speech, text) == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    # K = 3 instructions, N = 2 utterances
    states = np.array([[[1.0, 0.0], [0.0, 1.0]],    # instruction 0
                       [[0.0, 1.0], [0.0, 1.0]],    # instruction 1
                       [[1.0, 1.0], [0.0, 2.0]]])   # instruction 2
    r = 1 / math.sqrt(2)
    expected = np.array([[1.0, (0 + 1) / 2, (r + 1) / 2],
                         [(0 + 1) / 2, 1.0, (r + 1) / 2],
                         [(r + 1) / 2, (r + 1) / 2, 1.0]])
    np.testing.assert_allclose(instruction_similarity(states), expected)
    assert off_diagonal_mean(expected) == pytest.approx((0.5 + 2 * (r + 1) / 2) / 3)
    assert off_diagonal_mean([[1, 0.2, 0.4], [0.2, 1, 0.6], [0.4, 0.6, 1]]) == pytest.approx(0.4)


def test_centred_similarities_by_hand():
    """K = 2 instructions, L+1 = 1 layer, N = 2 utterances, H = 2."""
    speech = np.array([[[[1.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    text = np.array([[[[2.0, 0.0], [0.0, 2.0]]], [[[3.0, 1.0], [1.0, 3.0]]]])
    s = layerwise(speech, text)
    # instruction 0: mu_0 = (1, 1); s - mu_0 = (0, -1), (-1, 0); t - mu_0 = (1, -1), (-1, 1)
    # instruction 1: mu_1 = (2, 2); s - mu_1 = (-1, -1) twice; t - mu_1 = (1, -1), (-1, 1): cos 0
    r = 1 / math.sqrt(2)
    np.testing.assert_allclose(s["paired_c"][:, 0], [r, 0.0], atol=1e-12)
    # over all text states mu = (1.5, 1.5); utterance 0: s_0 - mu = (-0.5, -1.5), s_1 - mu = (-0.5, -0.5)
    a, b = np.array([-0.5, -1.5]), np.array([-0.5, -0.5])
    c, d = np.array([-1.5, -0.5]), np.array([-0.5, -0.5])  # utterance 1
    expected = (a @ b / np.linalg.norm(a) / np.linalg.norm(b) + c @ d / np.linalg.norm(c) / np.linalg.norm(d)) / 2
    assert s["cross_speech_c"][0, 1, 0] == pytest.approx(expected)
    # the same state for every prompt (layer 0 at the last position): centred is undefined, not an error
    same = np.ones((2, 1, 3, 4))
    assert np.isnan(layerwise(same, same)["paired_c"]).all()


def test_layerwise_equals_a_loop():
    rng = np.random.default_rng(0)
    K, L1, N, H = 4, 3, 5, 7
    speech, text = rng.standard_normal((K, L1, N, H)), rng.standard_normal((K, L1, N, H))
    s = layerwise(speech, text)
    assert s["paired"].shape == (K, L1) and s["cross_speech"].shape == (K, K, L1)
    for k in range(K):
        for layer in range(L1):
            cos = [speech[k, layer, n] @ text[k, layer, n]
                   / np.linalg.norm(speech[k, layer, n]) / np.linalg.norm(text[k, layer, n]) for n in range(N)]
            assert s["paired"][k, layer] == pytest.approx(np.mean(cos))
            for j in range(K):
                cos = [speech[k, layer, n] @ speech[j, layer, n]
                       / np.linalg.norm(speech[k, layer, n]) / np.linalg.norm(speech[j, layer, n]) for n in range(N)]
                assert s["cross_speech"][k, j, layer] == pytest.approx(np.mean(cos))


# ------------------------------------------------------------------ the command line

def _args(exp, dump, out, *extra):
    return ["--exp_dir", str(exp), "--data_dir", str(dump), "--out_dir", str(out), "--tsne_utts", "5",
            "--batch_size", "4", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def analysed(setup):
    root, exp, dump = setup
    other = make_tiny_exp(root / "exp/other", *_model_paths(exp), perturb=1.0, seed=3)
    out = root / "out"
    results = analyze.main(_args(exp, dump, out, "--compare", "ASR-pretraining=" + str(other)))
    return results, out, other


def _model_paths(exp):
    import yaml

    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    return cfg["speech_encoder_conf"]["model_name_or_path"], cfg["llm_conf"]["model_name_or_path"]


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24]), len(data)


def test_outputs(analysed, setup):
    results, out, _ = analysed
    assert list(results) == ["tiny", "untrained adapter", "ASR-pretraining"]
    md = (out / "analysis.md").read_text()
    assert md.startswith("# Representation analysis: tiny")
    for name, r in results.items():
        # the paired table's cells are the mean cosines of the saved final-layer states
        cells = [f"{paired_similarity(r['speech'][k], r['text'][k]):.3f}" for k in range(4)]
        assert f"| {name} | " + " | ".join(cells) + " |" in md
        cross = instruction_similarity(r["speech"])
        np.testing.assert_allclose(cross, r["cross_speech"][:, :, -1], atol=1e-6)
        assert f"| CW-S | 1.000 | {cross[0, 1]:.3f} | {cross[0, 2]:.3f} | {cross[0, 3]:.3f} |" in md
        assert r["paired"].shape == (4, 3)  # 4 instructions x (2 layers + embeddings)
        np.testing.assert_allclose(r["paired"][:, 0], 1.0, atol=1e-5)  # layer 0: the same suffix embedding
        (w, h), size = _png_size(out / f"tsne_{analyze.slug(name)}.png")
        assert w >= 800 and h >= 700 and size > 20_000
        assert f"![t-SNE: {name}](tsne_{analyze.slug(name)}.png)" in md
    (w, h), size = _png_size(out / "layers.png")
    assert w > h and size > 20_000
    summary = json.loads((out / "similarity.json").read_text())
    assert summary["layer"] == 2 and len(summary["systems"]["tiny"]["paired_by_layer"]) == 3
    assert (out / "cmd").read_text().startswith("python -m espnet_blsp.bin.analyze --exp_dir ")
    # text states are shared: every system has the same text matrix
    np.testing.assert_allclose(results["tiny"]["text"], results["untrained adapter"]["text"])


def test_rerun_reuses_the_states(analysed, setup, monkeypatch):
    _, exp, dump = setup
    results, out, other = analysed

    def fail(*a, **kw):
        raise AssertionError("extracted again")
    monkeypatch.setattr(analyze, "extract", fail)
    again = analyze.main(_args(exp, dump, out, "--compare", "ASR-pretraining=" + str(other)))
    for name in results:
        np.testing.assert_array_equal(again[name]["speech"], results[name]["speech"])


def test_clear_errors(setup, tmp_path):
    _, exp, dump = setup
    bare = tmp_path / "exp_bare"
    bare.mkdir()
    shutil.copy(exp / "config.yaml", bare / "config.yaml")
    with pytest.raises(SystemExit, match=r"analyze: error: no checkpoint .* in .*exp_bare"):
        analyze.main(_args(bare, dump, tmp_path / "o"))
    with pytest.raises(SystemExit, match=r"analyze: error: no checkpoint .* in .*exp_bare"):
        analyze.main(_args(exp, dump, tmp_path / "o", "--compare", f"X={bare}"))
    with pytest.raises(SystemExit, match=r"config.yaml not found"):
        analyze.main(_args(tmp_path / "nothing", dump, tmp_path / "o"))
    no_text = tmp_path / "no_text"
    shutil.copytree(dump, no_text)
    (no_text / "text").unlink()
    with pytest.raises(SystemExit, match=rf"{no_text / 'text'} not found: the analysis needs the transcripts"):
        analyze.main(_args(exp, no_text, tmp_path / "o"))
    (no_text / "text").write_text("u000 the sun\n")
    with pytest.raises(SystemExit, match=r"no transcript for 5 utterances of feats.scp, e.g. \['u001'"):
        analyze.main(_args(exp, no_text, tmp_path / "o"))
    for layer in ("3", "-2"):
        with pytest.raises(SystemExit, match=rf"--layer {layer} is out of range: the LLM has 2 layers, so 0..2"):
            analyze.main(_args(exp, dump, tmp_path / "o", "--layer", layer))
    assert not (tmp_path / "o").exists()  # every check ran before anything was written


def test_make_results_embeds_the_analysis(analysed, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    _, out, _ = analysed
    exp = tmp_path / "exp/tiny"
    shutil.copytree(out, exp / "analysis")
    probe = exp / "analysis/asr_probe"
    probe.mkdir()
    (probe / "asr_probe.md").write_text("# ASR probe: tiny\n\n- about\n\n| WER↓ | layer 0 | prompted |\n"
                                        "|---|---:|---:|\n| tiny | 50.0 | 20.0 |\n")
    (tmp_path / "exp/plain").mkdir()
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(repo / "local/make_results.py"), "--exp", "exp/tiny", "--exp",
                        "exp/plain", "--out", "exp/RESULTS_all.md"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "exp/RESULTS_all.md").read_text()
    assert "## Analysis" in text and "### tiny" in text and "### plain" not in text
    assert "#### Representation analysis: tiny" in text and "##### Summary" in text
    assert "![t-SNE: tiny](tiny/analysis/tsne_tiny.png)" in text  # relative to RESULTS_all.md
    assert "![layer-wise similarity](tiny/analysis/layers.png)" in text
    assert "#### ASR probe: tiny" in text and "| tiny | 50.0 | 20.0 |" in text
    for line in (exp / "analysis/analysis.md").read_text().splitlines():
        if line.startswith("| "):
            assert line in text
    assert text.index("## Analysis") < text.index("## Commands")
    r = subprocess.run([sys.executable, str(repo / "local/make_results.py"), "--exp", "exp/plain"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "## Analysis" not in (tmp_path / "exp/plain/RESULTS.md").read_text()
