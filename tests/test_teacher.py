"""Stage 3 -> stage 4: training targets are the token ids the teacher generated, unchanged.

Decoding the ids to text and tokenising that again need not give them back: with a byte-level
BPE the response " the sun" is [Ġthe, Ġsun], its text (stripped) "the sun" is [t, he, Ġsun].
"""

import logging
from pathlib import Path

import numpy as np
import torch

from espnet_blsp.bin import generate_teacher
from espnet_blsp.collate import BLSPCollateFn
from espnet_blsp.data.kaldi_dir import read_kv
from espnet_blsp.llm.causal_lm import SpeechLLM
from espnet_blsp.preprocess import build_preprocessor
from espnet_blsp.tasks.blsp import BLSPTask
from espnet_blsp.utils.resumable import LineAppender, recover_lines

TEXTS = [f"the weather is warm number {i}" for i in range(6)]


def _dump(root: Path) -> Path:
    """A stage-2 dump dir: feats.scp (random log-mel), text and speech_shape."""
    import kaldiio

    d = root / "dump"
    d.mkdir()
    keys = [f"u{i}" for i in range(len(TEXTS))]
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for k in keys:
            w(k, np.zeros((20, 80), dtype=np.float32))
    for name, rows in (("text", TEXTS), ("speech_shape", ["20,80"] * len(keys))):
        (d / name).write_text("".join(f"{k} {r}\n" for k, r in zip(keys, rows)))
    return d


def _generate(d: Path, llm: str, nj: int = 2):
    for job in range(1, nj + 1):
        generate_teacher.main(["--llm", llm, "--text", str(d / "text"), "--out", str(d / f"split{nj}/continuation_ids.{job}"),
                               "--nj", str(nj), "--job", str(job), "--batch_size", "2", "--max_new_tokens", "4",
                               "--device", "cpu"])


def _ids(line: str):
    return [int(x) for x in line.split()]


def test_jobs_write_the_generated_ids(tmp_path, tiny_llm):
    d = _dump(tmp_path)
    _generate(d, tiny_llm)
    got = {}
    for job in (1, 2):
        got.update({k: _ids(v) for k, v in recover_lines(d / f"split2/continuation_ids.{job}").items()})
    llm = SpeechLLM(tiny_llm, dtype="float32")
    t = llm.template
    prefix = torch.tensor(t.prefix_ids(generate_teacher.CONTINUATION))
    suffix = torch.tensor(t.suffix_ids())
    for i, text in enumerate(TEXTS):  # one at a time: batched greedy equals single (test_llm)
        want = llm.generate([prefix], [torch.tensor(t.text_ids(text))], [suffix], middle_is_speech=False,
                            max_new_tokens=4)[0]
        assert got[f"u{i}"] == want


def test_training_targets_are_the_generated_ids(tmp_path, tiny_llm):
    from espnet2.train.dataset import ESPnetDataset

    d = _dump(tmp_path)
    _generate(d, tiny_llm)
    # u0's teacher "generated" " the sun" (a response whose text does not round-trip)
    llm = SpeechLLM(tiny_llm, dtype="float32")
    t, tok = llm.template, llm.tokenizer
    the_sun = t.text_ids(" the sun")
    text_of = tok.decode(the_sun, skip_special_tokens=True).strip()
    assert text_of == "the sun" and t.text_ids(text_of) != the_sun
    job1 = d / "split2/continuation_ids.1"
    rows = recover_lines(job1)
    rows["u0"] = " ".join(map(str, the_sun))
    job1.unlink()
    with LineAppender(job1) as w:
        w.write(sorted(rows.items()))
    generated = {k: _ids(v) for job in (1, 2) for k, v in recover_lines(d / f"split2/continuation_ids.{job}").items()}

    out = tmp_path / "train_cw"
    generate_teacher.main(["--mix", "--llm", tiny_llm, "--dump_dir", str(d), "--out_dir", str(out), "--nj", "2",
                           "--rp_ratio", "1:2"])
    response, response_ids, instruction = (read_kv(out / f) for f in ("response", "response_ids", "instruction"))
    rp = sorted(k for k in response_ids if k.endswith("-rp"))
    assert len(rp) == 3 and len(response_ids) == 6 + 3  # round(6 / 2) repetitions
    assert set(response) == set(response_ids) == set(instruction) == set(read_kv(out / "speech_shape"))
    texts = read_kv(d / "text")
    for k, v in response_ids.items():
        if k in rp:  # repetition: the transcript's ids, as the preprocessor tokenises text
            u = k.removesuffix("-rp")
            assert _ids(v) == t.text_ids(texts[u]) and response[k] == texts[u]
            assert instruction[k] == generate_teacher.REPETITION
        else:  # continuation: the generated ids; the text is their decoding, for people
            assert _ids(v) == generated[k]
            assert response[k] == " ".join(tok.decode(generated[k], skip_special_tokens=True).split())
    assert response["u0"] == "the sun" and _ids(response_ids["u0"]) == the_sun

    # stage 4 reads response_ids with ESPnet's text_int loader; the preprocessor prefers it
    dataset = ESPnetDataset(
        [(str(out / "feats.scp"), "speech", "kaldi_ark"), (str(out / "text"), "text", "text"),
         (str(out / "response_ids"), "response_ids", "text_int"),
         (str(out / "response"), "response", "text"), (str(out / "instruction"), "instruction", "text")],
        preprocess=build_preprocessor({"model_name_or_path": tiny_llm}),
    )
    BLSPTask.check_task_requirements(dataset, allow_variable_data_keys=False, train=True)
    items = [dataset[k] for k in sorted(response_ids)]
    for k, data in items:
        assert data["response"].tolist() == _ids(response_ids[k])
    assert dict(items)["u0"]["response"].tolist() == the_sun  # not t.text_ids("the sun")
    _, batch = BLSPCollateFn()(items)
    assert batch["response_lengths"].tolist() == [len(_ids(response_ids[k])) for k, _ in items]
    assert "response_ids" not in batch  # the preprocessor turned it into the response


def test_without_response_ids_the_text_is_tokenised(tiny_llm):
    pre = build_preprocessor({"model_name_or_path": tiny_llm})
    out = pre("u", {"text": "the sun", "response": "the sun"})
    assert out["response"].tolist() == pre.template.text_ids("the sun")
    out = pre("u", {"text": "the sun", "response": "the sun", "response_ids": np.array([407, 596])})
    assert out["response"].tolist() == [407, 596] and out["response"].dtype == np.int64


def test_another_nj_copies_the_continuations_instead_of_generating_them(tmp_path, tiny_llm, caplog):
    caplog.set_level(logging.INFO)
    d = _dump(tmp_path)
    _generate(d, tiny_llm, nj=2)
    two = {**recover_lines(d / "split2/continuation_ids.1"), **recover_lines(d / "split2/continuation_ids.2")}
    reuse = [str(d / "split2/continuation_ids.1"), str(d / "split2/continuation_ids.2")]
    # every continuation is there: no model is loaded (a path that does not exist would fail)
    for job in (1, 2, 3):
        generate_teacher.main(["--llm", str(tmp_path / "no_such_llm"), "--text", str(d / "text"),
                               "--out", str(d / f"split3/continuation_ids.{job}"), "--nj", "3", "--job", str(job),
                               "--reuse", *reuse])
    three = {}
    for job in (1, 2, 3):
        three.update(recover_lines(d / f"split3/continuation_ids.{job}"))
    assert three == two and len(three) == len(TEXTS)
    assert "continuations taken from 2 files of another --nj" in caplog.text
    # a partial earlier run: the missing utterances are generated, the rest copied
    (d / "split1").mkdir()
    with LineAppender(d / "split1/continuation_ids.1") as w:
        w.write([("u0", two["u0"])])
    generate_teacher.main(["--llm", tiny_llm, "--text", str(d / "text"), "--out", str(d / "split1/continuation_ids.1"),
                           "--nj", "1", "--job", "1", "--max_new_tokens", "4", "--device", "cpu", "--reuse", reuse[0]])
    one = recover_lines(d / "split1/continuation_ids.1")
    assert sorted(one) == sorted(two) and all(one[k] == two[k] for k in recover_lines(reuse[0]))
