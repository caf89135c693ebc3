"""The Python API (espnet_blsp.load / SpeechChat) and the export round trip, on tiny random models.

Two tiny exp dirs (tests/conftest.py): CNN + BLSP template on log-mel input, and CFormer +
chat template + Partial LoRA on dumped encoder outputs. Checked: stage 5 and ``respond`` give
the same answers; resampling, stereo and integer input; batch against single; the multi-turn
prompt token by token against each template; streaming; the export (files, model card, same
outputs); the errors for a wrong dir, a missing base model, another LLM, bad audio.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

import espnet_blsp
from espnet_blsp.api import load, load_audio
from espnet_blsp.testing.tiny import make_tiny_llm
from espnet_blsp.utils.audio import AudioError

REPO = Path(__file__).resolve().parents[1]
REPEAT = "Please repeat the following words."
CONTINUE = "Continue the following text in a coherent and engaging style with less than 40 words."
OPTS = dict(max_new_tokens=8)


def _clip(seconds: float, sr: int = 16000, seed: int = 0, f0: float = 220.0) -> np.ndarray:
    """A speech-like test signal: a few harmonics with a slow envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 5))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _wav(path: Path, x: np.ndarray, sr: int = 16000) -> str:
    soundfile.write(str(path), x, sr, subtype="FLOAT")  # float: the file holds exactly x
    return str(path)


@pytest.fixture(scope="module")
def models(tiny_exp, tiny_exp_chat):
    return {"blsp": load(tiny_exp, device="cpu"), "chat": load(tiny_exp_chat, device="cpu")}


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("wavs")
    shapes = [(1.3, 180), (0.6, 240), (2.1, 130)]  # (seconds, f0): three lengths, three voices
    return [_wav(d / f"c{i}.wav", _clip(s, seed=i, f0=f)) for i, (s, f) in enumerate(shapes)]


def test_import_is_light():
    lazy = subprocess.run([sys.executable, "-c", "import sys, espnet_blsp; print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    assert lazy.stdout.strip() == "False"
    assert espnet_blsp.load is load  # resolved on first use


def test_loaded_weights_are_the_checkpoint(models, tiny_exp):
    state = torch.load(Path(tiny_exp) / "valid.loss.best.pth", map_location="cpu")
    got = models["blsp"].model.state_dict()
    assert set(got) == set(state)
    for k in state:
        assert torch.equal(got[k], state[k]), k


@pytest.mark.parametrize("which", ["blsp", "chat"])
def test_respond_equals_stage5(which, models, tiny_exp, tiny_exp_chat, tiny_whisper, wavs, tmp_path):
    """The same clips through stages 2 and 5 (dump_feats + blsp_inference) give the same text."""
    from espnet_blsp.bin import blsp_inference, dump_feats
    from espnet_blsp.utils.resumable import recover_lines

    exp = tiny_exp if which == "blsp" else tiny_exp_chat
    data = tmp_path / "data"
    data.mkdir()
    utts = {f"utt{i}": w for i, w in enumerate(wavs)}
    (data / "wav.scp").write_text("".join(f"{k} {w}\n" for k, w in utts.items()))
    (data / "text").write_text("".join(f"{k} unused\n" for k in utts))
    dump = tmp_path / "dump"
    opt = ["--dump_encoder_output"] if which == "chat" else []
    threads = torch.get_num_threads()  # dump_feats sets its own
    dump_feats.main(["--data_dir", str(data), "--out_dir", str(dump), "--speech_encoder", tiny_whisper] + opt)
    dump_feats.main(["--data_dir", str(data), "--out_dir", str(dump), "--merge"])
    torch.set_num_threads(threads)
    out = tmp_path / "decode"
    blsp_inference.main(["--exp_dir", str(exp), "--data_dir", str(dump), "--task", "asr", "--out_dir", str(out),
                         "--max_new_tokens", "8", "--batch_size", "2", "--device", "cpu"])
    stage5 = recover_lines(out / "text")
    answers = models[which].respond(list(utts.values()), REPEAT, **OPTS)
    assert [stage5.get(k, "") for k in utts] == answers
    assert any(answers)
    # a re-run resumes (here: skips) only with the options that made the responses
    blsp_inference.main(["--exp_dir", str(exp), "--data_dir", str(dump), "--task", "asr", "--out_dir", str(out),
                         "--max_new_tokens", "8", "--batch_size", "1", "--device", "cpu"])
    with pytest.raises(SystemExit, match=r"max_new_tokens: 8 then, 4 now.*remove .*decode"):
        blsp_inference.main(["--exp_dir", str(exp), "--data_dir", str(dump), "--task", "asr", "--out_dir", str(out),
                             "--max_new_tokens", "4", "--device", "cpu"])
    assert recover_lines(out / "text") == stage5


def test_prompt_of_one_speech_turn_is_stage5s(models, wavs):
    for m in models.values():
        t = m.template
        pieces = m.prompt_pieces([{"role": "user", "audio": wavs[0], "text": CONTINUE}])
        assert pieces == [t.prefix_ids(CONTINUE), t.suffix_ids()]


@pytest.mark.parametrize("which", ["blsp", "chat"])
def test_batch_equals_single(which, models, wavs):
    m = models[which]
    instructions = [REPEAT, CONTINUE, REPEAT]
    single = [m.respond(w, i, **OPTS) for w, i in zip(wavs, instructions)]
    assert m.respond(wavs, instructions, batch_size=3, **OPTS) == single
    assert m.respond(wavs, instructions, batch_size=2, **OPTS) == single
    assert len(set(single)) > 1  # the clips get different answers: the test can fail


def test_resampling(models, tmp_path):
    x44 = _clip(1.5, sr=44100, seed=3)
    y = load_audio((x44, 44100))
    assert y.dtype == np.float32 and abs(len(y) - round(len(x44) * 16000 / 44100)) <= 1
    # a 440 Hz tone stays at 440 Hz
    tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
    spec = np.abs(np.fft.rfft(load_audio((tone, 44100))))
    assert abs(np.argmax(spec) * 16000 / (2 * (len(spec) - 1)) - 440) < 2
    m = models["blsp"]
    path = _wav(tmp_path / "c44.wav", x44, 44100)
    assert m.respond(path, **OPTS) == m.respond((x44, 44100), **OPTS)
    assert m.respond((x44, 44100), **OPTS) != m.respond((x44, 16000), **OPTS)  # the rate is used
    # integer PCM is scaled to [-1, 1]
    pcm = (x44 * 32768).astype(np.int16)
    np.testing.assert_allclose(load_audio((pcm, 44100)), y, atol=1e-4)


def test_stereo_gives_the_first_channel(models, tmp_path):
    x = _clip(1.2, seed=5)
    other = _clip(1.2, seed=6, f0=400)
    stereo = np.stack([x, other], axis=1)  # (S, 2)
    m = models["blsp"]
    mono = m.respond((x, 16000), **OPTS)
    assert m.respond((stereo, 16000), **OPTS) == mono
    assert m.respond((stereo.T.copy(), 16000), **OPTS) == mono  # (C, S)
    assert m.respond(_wav(tmp_path / "st.wav", stereo), **OPTS) == mono
    assert m.respond((other, 16000), **OPTS) != mono


# ---------------------------------------------------------------------------- multi-turn prompts
def _conversation(wavs):
    return [
        {"role": "user", "audio": wavs[0], "text": REPEAT},
        {"role": "assistant", "text": "the sun is warm"},
        {"role": "user", "text": "What did I say?"},
        {"role": "assistant", "text": "rain on the city"},
        {"role": "user", "audio": wavs[1], "text": ""},
    ]


# What each template makes of _conversation, written out by hand: the text between the clips.
EXPECTED_TEXT = {
    # espnet_blsp.testing.tiny.CHAT_TEMPLATE: <s>{role}\n{content}</s>\n per turn, <s>assistant\n to reply
    "chat": [f"<s>user\n{REPEAT}",
             "</s>\n<s>assistant\nthe sun is warm</s>\n<s>user\nWhat did I say?</s>\n<s>assistant\n"
             "rain on the city</s>\n<s>user\n",
             "</s>\n<s>assistant\n"],
    # BLSP: BOS ###[Human]:{user}\n\n\n###[Assistant]:{reply}\n\n\n###[Human]:...
    "blsp": [f"###[Human]:{REPEAT}",
             "\n\n\n###[Assistant]:the sun is warm\n\n\n###[Human]:What did I say?\n\n\n###[Assistant]:"
             "rain on the city\n\n\n###[Human]:",
             "\n\n\n###[Assistant]:"],
}


@pytest.mark.parametrize("which", ["blsp", "chat"])
def test_multi_turn_prompt_token_by_token(which, models, wavs):
    m = models[which]
    tok = m.llm.tokenizer
    turns = _conversation(wavs)
    expected = [tok(t, add_special_tokens=False)["input_ids"] for t in EXPECTED_TEXT[which]]
    if which == "blsp":
        expected[0] = [tok.bos_token_id] + expected[0]
    pieces = m.prompt_pieces(turns)
    assert pieces == expected
    # what the LLM reads: the embeddings of those ids around the adapter outputs of the two clips
    batch = m.build_batch([turns])
    clips = m.speech_embeddings([load_audio(wavs[0]), load_audio(wavs[1])])
    emb = m.llm.embed
    want = torch.cat([emb(torch.tensor(expected[0])), clips[0], emb(torch.tensor(expected[1])), clips[1],
                      emb(torch.tensor(expected[2]))])
    L = want.shape[0]
    assert int(batch.lengths[0]) == L == sum(map(len, expected)) + sum(c.shape[0] for c in clips)
    torch.testing.assert_close(batch.inputs_embeds[0, :L], want, rtol=0, atol=0)
    speech = torch.zeros(L, dtype=torch.bool)
    a, n0 = len(expected[0]), clips[0].shape[0]
    b = a + n0 + len(expected[1])
    speech[a : a + n0] = True
    speech[b : b + clips[1].shape[0]] = True
    assert torch.equal(batch.speech_mask[0, :L].cpu(), speech)  # Partial LoRA on the clips only


def test_text_only_chat_equals_the_tokenizers_own_rendering(models):
    m = models["chat"]
    messages = [{"role": "user", "content": "What is the weather?"}, {"role": "assistant", "content": "rain"},
                {"role": "user", "content": "And tomorrow?"}]
    turns = [{"role": x["role"], "text": x["content"]} for x in messages]
    ids = m.llm.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert m.prompt_pieces(turns) == [list(ids)]
    reply = m.chat(turns, **OPTS)
    from espnet_blsp.llm.decoding import decode

    batch = m.llm.build_inputs([torch.tensor(list(ids))], [torch.zeros(0, m.llm.hidden_size)], [torch.zeros(0).long()])
    assert reply == m.llm.tokenizer.decode(decode(m.llm, batch, **OPTS)[0], skip_special_tokens=True)


@pytest.mark.parametrize("which", ["blsp", "chat"])
def test_chat_and_stream(which, models, wavs):
    m = models[which]
    turns = _conversation(wavs)
    reply = m.chat(turns, **OPTS)
    pieces = list(m.chat(turns, stream=True, **OPTS))
    assert "".join(pieces) == reply
    one = m.respond(wavs[2], REPEAT, **OPTS)
    streamed = list(m.respond(wavs[2], REPEAT, stream=True, **OPTS))
    assert "".join(streamed) == one
    if len(one.split()) > 1:
        assert len(streamed) > 1  # it streams, not one piece at the end
    # the history matters: the same last turn alone gets another prompt
    assert m.prompt_pieces(turns[-1:]) != m.prompt_pieces(turns)[-2:]
    assert m.chat(turns[:1], **OPTS) == m.respond(wavs[0], REPEAT, **OPTS)


def test_system_turn(models):
    for which, m in models.items():
        pieces = m.prompt_pieces([{"role": "system", "text": "Be brief."}, {"role": "user", "text": "Hi"}])
        text = m.llm.tokenizer.decode(pieces[0])
        assert "Be brief." in text and text.index("Be brief.") < text.index("Hi"), which


# ---------------------------------------------------------------------------- export
@pytest.fixture(scope="module")
def exported(tiny_exp_chat, tmp_path_factory):
    from espnet_blsp.bin import export

    out = tmp_path_factory.mktemp("export") / "tiny_chat"
    export.main(["--exp_dir", str(tiny_exp_chat), "--out_dir", str(out)])
    return out


def test_export_files_and_model_card(exported, tiny_exp_chat, tiny_llm, tiny_whisper):
    from safetensors.torch import load_file

    names = sorted(p.name for p in exported.iterdir())
    assert names == ["README.md", "config.yaml", "curves", "export.json", "model.safetensors"]
    state = load_file(str(exported / "model.safetensors"))
    ckpt = torch.load(Path(tiny_exp_chat) / "valid.loss.best.pth", map_location="cpu")
    assert set(state) == set(ckpt) and any(".lora_A" in k for k in state)
    for k in ckpt:
        assert torch.equal(state[k], ckpt[k]), k
    meta = json.loads((exported / "export.json").read_text())
    assert meta["base_models"]["llm"]["resolved_path"] == str(Path(tiny_llm).resolve())
    assert meta["base_models"]["speech_encoder"]["config"]["model_type"] == "whisper"
    assert meta["num_trainable_params"] == sum(v.numel() for v in state.values())
    card = (exported / "README.md").read_text()
    for needle in ("## Base models", tiny_llm, "## Training data", "dump/tiny_train", "blsp_train --config tiny.yaml",
                   "./run.sh --stage 4", "| tiny_cformer_chat | 99.9 |", "![learning curve](curves/learning_curve.png)",
                   "not in peft's adapter format", "espnet_blsp.load"):
        assert needle in card, needle
    assert (exported / "curves" / "learning_curve.png").read_bytes() == (
        Path(tiny_exp_chat) / "curves" / "learning_curve.png").read_bytes()
    assert yaml.safe_load((exported / "config.yaml").read_text()) == yaml.safe_load(
        (Path(tiny_exp_chat) / "config.yaml").read_text())


def test_export_round_trip(exported, models, wavs, tmp_path):
    again = load(exported, device="cpu")
    m = models["chat"]
    assert again.respond(wavs, REPEAT, **OPTS) == m.respond(wavs, REPEAT, **OPTS)
    assert again.chat(_conversation(wavs), **OPTS) == m.chat(_conversation(wavs), **OPTS)
    # the export does not depend on the exp dir
    moved = tmp_path / "moved"
    shutil.copytree(exported, moved)
    assert load(moved, device="cpu").respond(wavs[0], **OPTS) == m.respond(wavs[0], **OPTS)


def test_export_refuses_to_overwrite(exported, tiny_exp_chat, tmp_path):
    from espnet_blsp.bin import export

    with pytest.raises(SystemExit, match="already holds an export: pass --overwrite"):
        export.main(["--exp_dir", str(tiny_exp_chat), "--out_dir", str(exported)])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists and is not an export"):
        export.main(["--exp_dir", str(tiny_exp_chat), "--out_dir", str(tmp_path / "other")])


def test_export_with_another_llm_is_refused(exported, tmp_path):
    same_arch = make_tiny_llm(str(tmp_path / "llama_seed1"), arch="llama", seed=1)
    with pytest.raises(ValueError, match=r"llama_seed1 is not the LLM the export .* was made with: its weights differ"):
        load(exported, device="cpu", llm=same_arch)
    qwen = make_tiny_llm(str(tmp_path / "qwen2"), arch="qwen2")
    with pytest.raises(ValueError, match=r"qwen2 is not the LLM the export .* config.json differs in model_type "
                                         r"\(qwen2 here, llama expected\)"):
        load(exported, device="cpu", llm=qwen)


# ---------------------------------------------------------------------------- errors
def test_wrong_dirs(tiny_exp, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'}: no such directory; expected an experiment dir"):
        load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} holds no config.yaml; expected an experiment dir"):
        load(tmp_path)
    (tmp_path / "config.yaml").write_text("batch_size: 4\n")
    with pytest.raises(ValueError, match="is not a BLSP training config"):
        load(tmp_path)
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(Path(tiny_exp) / "config.yaml", bare / "config.yaml")
    with pytest.raises(FileNotFoundError, match=f"no checkpoint .* in {bare}"):
        load(bare)


def test_missing_base_model(tiny_exp, tmp_path):
    exp = tmp_path / "exp" / "moved"
    shutil.copytree(tiny_exp, exp)
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    cfg["llm_conf"]["model_name_or_path"] = "assets/gone-llm"
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(FileNotFoundError, match=r"the LLM checkpoint assets/gone-llm \(recorded in .*config.yaml\) "
                                                r"is not found .*pass llm=<dir>"):
        load(exp, device="cpu")
    with pytest.raises(FileNotFoundError, match=r"speech encoder \(Whisper\) checkpoint /no/whisper \(given as "
                                                r"speech_encoder\)"):
        load(tiny_exp, device="cpu", speech_encoder="/no/whisper")


def test_relative_base_model_paths_resolve_from_the_recipe_dir(tiny_exp, tiny_llm, tmp_path, monkeypatch):
    recipe = tmp_path / "recipe"
    shutil.copytree(tiny_llm, recipe / "assets" / "llm")
    exp = recipe / "exp" / "tag"
    shutil.copytree(tiny_exp, exp)
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    cfg["llm_conf"]["model_name_or_path"] = "assets/llm"  # as run.sh records it
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    assert load(exp, device="cpu").base_models["llm"] == str(recipe / "assets" / "llm")


def test_bad_audio(models, tmp_path):
    m = models["blsp"]
    with pytest.raises(AudioError, match=f"{tmp_path / 'missing.wav'}: audio file not found"):
        m.respond(str(tmp_path / "missing.wav"))
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio at all")
    with pytest.raises(AudioError, match=f"cannot decode audio {bad}"):
        m.respond(str(bad))
    with pytest.raises(AudioError, match="31.0 s long; Whisper encodes at most 30 s"):
        m.respond((np.zeros(31 * 16000, np.float32), 16000))
    with pytest.raises(AudioError, match="too short"):
        m.respond((np.zeros(800, np.float32), 16000))
    with pytest.raises(AudioError, match="NaN"):
        m.respond((np.full(16000, np.nan, np.float32), 16000))
    with pytest.raises(ValueError, match="turn 0: a user turn needs text or audio"):
        m.chat([{"role": "user", "text": " "}])
    with pytest.raises(ValueError, match="must end with a user turn"):
        m.chat([{"role": "user", "text": "hi"}, {"role": "assistant", "text": "hello"}])
