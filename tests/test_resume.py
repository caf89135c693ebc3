"""Stages killed halfway resume without duplicated or lost entries."""

from pathlib import Path

import numpy as np
import soundfile

from espnet_blsp.bin import dump_feats, generate_teacher
from espnet_blsp.data.kaldi_dir import read_kv
from espnet_blsp.testing.fake_corpus import make_fake_corpus
from espnet_blsp.utils.resumable import LineAppender, recover_lines, threads_per_job


def test_recover_truncates_partial_line(tmp_path):
    p = tmp_path / "out"
    with LineAppender(p) as w:
        w.write([("a", "one"), ("b", "two\nlines")])
    with open(p, "a") as f:
        f.write("c half-writ")  # killed mid-line
    assert recover_lines(p) == {"a": "one", "b": "two lines"}
    assert p.read_text() == "a one\nb two lines\n"


def test_threads_per_job_shares_the_cores_and_keeps_an_explicit_cap(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [threads_per_job(n) for n in (1, 2, 3, 16)] == [8, 4, 2, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # e.g. a parallel test worker
    assert threads_per_job(1) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert [threads_per_job(1), threads_per_job(2)] == [6, 4]
    monkeypatch.setenv("OMP_NUM_THREADS", "")  # set but empty: ignored
    assert threads_per_job(1) == 8


def test_teacher_generation_resumes(tmp_path, tiny_llm):
    text = tmp_path / "text"
    text.write_text("".join(f"u{i} the weather is warm number {i}\n" for i in range(6)))
    out = tmp_path / "continuation_ids"
    args = ["--llm", tiny_llm, "--text", str(text), "--out", str(out), "--batch_size", "2",
            "--max_new_tokens", "4", "--device", "cpu"]
    generate_teacher.main(args)
    full = recover_lines(out)
    assert all(v.split() and all(x.isdigit() for x in v.split()) for v in full.values())  # token ids
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][:5])  # killed mid-write
    generate_teacher.main(args)
    again = recover_lines(out)
    assert again == full and len(out.read_text().splitlines()) == 6  # the same ids, no duplicates


def test_dump_excludes_bad_audio_and_resumes(tmp_path, tiny_whisper):
    corpus = Path(make_fake_corpus(str(tmp_path / "c"), {"s": 5}))
    d = corpus / "s"
    wav = read_kv(d / "wav.scp")
    bad, long_ = sorted(wav)[:2]
    Path(wav[bad]).write_bytes(b"not audio")
    soundfile.write(wav[long_], np.zeros(16000 * 31, dtype=np.float32), 16000)
    out = tmp_path / "dump"
    for job in (1, 2):
        dump_feats.main(["--data_dir", str(d), "--out_dir", str(out), "--speech_encoder", tiny_whisper, "--nj", "2", "--job", str(job)])
    dump_feats.main(["--data_dir", str(d), "--out_dir", str(out), "--speech_encoder", tiny_whisper, "--nj", "2", "--job", "1"])
    dump_feats.main(["--data_dir", str(d), "--out_dir", str(out), "--nj", "2", "--merge"])
    excluded = read_kv(out / "excluded.txt")
    assert "unreadable audio" in excluded[bad] and bad in excluded[bad]
    assert "too long" in excluded[long_]
    feats = read_kv(out / "feats.scp")
    assert sorted(feats) == sorted(set(wav) - {bad, long_})
    assert sorted(read_kv(out / "text")) == sorted(feats)
