"""Kaldi-style files and data dirs: reading, writing, validation, filtering."""

from pathlib import Path

import pytest

from espnet_blsp.data.kaldi_dir import (
    DataDirError, check_data_dir, filter_data_dir, iter_kv, read_kv, read_segments, utt2spk_to_spk2utt,
    validate_data_dir, write_kv,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def make_dir(d: Path, segments: bool = False) -> Path:
    """Three utterances of two speakers; with segments, two of them share recording r1."""
    if segments:
        write(d / "wav.scp", "r1 /audio/r1.wav\nr2 /audio/r2.wav\n")
        write(d / "segments", "a-1 r1 0 1.5\na-2 r1 1.5 3\nb-1 r2 0.2 2\n")
    else:
        write(d / "wav.scp", "a-1 /audio/a1.wav\na-2 /audio/a2.wav\nb-1 /audio/b1.wav\n")
    write(d / "text", "a-1 hello world\na-2 good morning\nb-1 thank you\n")
    write(d / "utt2spk", "a-1 a\na-2 a\nb-1 b\n")
    write(d / "spk2utt", "a a-1 a-2\nb b-1\n")
    return d


def test_read_kv_keeps_order_and_values(tmp_path):
    p = write(tmp_path / "f", "z first value  \nb\tsecond\n\na\nc pipe -x a.wav |\n")
    table = read_kv(p)
    assert list(table) == ["z", "b", "a", "c"]  # file order, blank line skipped
    assert table == {"z": "first value", "b": "second", "a": "", "c": "pipe -x a.wav |"}
    assert [lineno for lineno, _, _ in iter_kv(p)] == [1, 2, 4, 5]


def test_read_kv_errors_name_file_and_line(tmp_path):
    p = tmp_path / "text"
    p.write_bytes(b"u1 fine\nu2 caf\xe9 latin-1\n")
    with pytest.raises(DataDirError, match=r"text:2: not UTF-8"):
        read_kv(p)
    write(p, "u1 a\n  u2 leading space\n")
    with pytest.raises(DataDirError, match=r"text:2: malformed"):
        read_kv(p)
    write(p, "u1 a\nu2 b\nu1 c\n")
    with pytest.raises(DataDirError, match=r"text:3: duplicate key u1"):
        read_kv(p)
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_kv(tmp_path / "nothere")


def test_write_kv_sorted_atomic_round_trip(tmp_path):
    p = tmp_path / "sub" / "text"
    table = {"b-2": "two", "a-1": "one", "b-10": "ten", "c": ""}
    write_kv(p, table)
    assert p.read_text() == "a-1 one\nb-10 ten\nb-2 two\nc\n"  # C-locale order, "b-10" < "b-2"
    assert read_kv(p) == table
    assert [f.name for f in p.parent.iterdir()] == ["text"]  # no temp file left
    with pytest.raises(DataDirError, match="line break"):
        write_kv(p, {"u": "two\nlines"})
    with pytest.raises(DataDirError, match="whitespace"):
        write_kv(p, {"u 1": "x"})
    assert read_kv(p) == table  # a failed write leaves the old file intact


def test_read_segments(tmp_path):
    d = make_dir(tmp_path / "d", segments=True)
    assert read_segments(d / "segments") == {"a-1": ("r1", 0.0, 1.5), "a-2": ("r1", 1.5, 3.0), "b-1": ("r2", 0.2, 2.0)}
    write(d / "segments", "a-1 r1 0 x\n")
    with pytest.raises(DataDirError, match=r"segments:1: bad segment for a-1"):
        read_segments(d / "segments")


def test_spk2utt():
    assert utt2spk_to_spk2utt({"b-1": "b", "a-2": "a", "a-1": "a"}) == {"a": "a-1 a-2", "b": "b-1"}


@pytest.mark.parametrize("segments", [False, True])
def test_valid_dir_has_no_problems(tmp_path, segments):
    d = make_dir(tmp_path / "d", segments)
    assert validate_data_dir(d) == []
    check_data_dir(d)


def test_mismatched_ids_are_listed(tmp_path):
    d = make_dir(tmp_path / "d")
    write(d / "text", "a-1 hello world\nb-1 thank you\nc-9 stray\n")
    write(d / "continuation", "a-1 and so on\na-2 more\n")
    problems = validate_data_dir(d)
    assert any("text: utterance ids differ" in p and "1 extra ['c-9']" in p and "1 missing ['a-2']" in p for p in problems)
    assert any("continuation: utterance ids differ" in p and "missing ['b-1']" in p for p in problems)
    with pytest.raises(DataDirError, match=r"(?s)invalid data dir.*c-9.*continuation"):
        check_data_dir(d)


def test_duplicates_empty_transcripts_and_order(tmp_path):
    d = make_dir(tmp_path / "d")
    write(d / "text", "a-1 hello world\na-2\nb-1 thank you\n")
    write(d / "utt2spk", "a-1 a\na-2 a\nb-1 b\na-2 a\n")
    write(d / "wav.scp", "a-2 /audio/a2.wav\na-1 /audio/a1.wav\nb-1 /audio/b1.wav\n")
    problems = "\n".join(validate_data_dir(d))
    assert "text: 1 empty values, e.g. ['a-2']" in problems
    assert "utt2spk: 1 duplicate ids, e.g. ['a-2']" in problems
    assert "wav.scp:2: keys are not sorted" in problems


def test_segments_and_spk2utt_checks(tmp_path):
    d = make_dir(tmp_path / "d", segments=True)
    write(d / "segments", "a-1 r1 0 1.5\na-2 r9 1.5 3\nb-1 r2 2 1\n")
    write(d / "spk2utt", "a a-1\nb b-1\n")
    problems = "\n".join(validate_data_dir(d))
    assert "recording r9 of a-2 is not in wav.scp" in problems
    assert "bad times for b-1: 2.0 1.0" in problems
    assert "spk2utt does not match utt2spk" in problems
    (d / "text").unlink()
    assert validate_data_dir(d) == [f"{d / 'text'} is missing"]


def test_non_utf8_file_is_a_problem_naming_file_and_line(tmp_path):
    d = make_dir(tmp_path / "d")
    (d / "text").write_bytes(b"a-1 hello\na-2 \xff\xfe\nb-1 thank you\n")
    assert any(p.startswith(f"{d / 'text'}:2: not UTF-8") for p in validate_data_dir(d))


@pytest.mark.parametrize("segments", [False, True])
def test_filter_data_dir(tmp_path, segments):
    src = make_dir(tmp_path / "src", segments)
    write(src / "excluded.txt", "z-0 empty transcript\n")
    dst = tmp_path / "dst"
    kept = filter_data_dir(src, dst, {"a-1": "too long", "a-2": "too short"})
    assert kept == 1
    assert read_kv(dst / "text") == {"b-1": "thank you"}
    assert read_kv(dst / "utt2spk") == {"b-1": "b"}
    assert read_kv(dst / "spk2utt") == {"b": "b-1"}
    assert read_kv(dst / "excluded.txt") == {"a-1": "too long", "a-2": "too short", "z-0": "empty transcript"}
    if segments:
        assert read_kv(dst / "wav.scp") == {"r2": "/audio/r2.wav"}  # r1 has no segment left
        assert read_kv(dst / "segments") == {"b-1": "r2 0.2 2"}
    else:
        assert read_kv(dst / "wav.scp") == {"b-1": "/audio/b1.wav"}
    check_data_dir(dst)
    with pytest.raises(DataDirError, match="unknown utterances"):
        filter_data_dir(src, dst, {"nope": "x"})
