"""Stage 1 data prep: every corpus layout on a small fake corpus built here.

Audio is written with soundfile in each corpus's real format where libsndfile can encode
it: FLAC (LibriSpeech, SLUE), MP3 (Common Voice, CoVoST 2), Ogg/Opus (GigaSpeech), NIST
SPHERE (TED-LIUM 3), WAV (MuST-C, SNIPS, FSC). TED-LIUM's real .sph files might be
shorten-compressed, which this cannot produce; that fallback (a sph2pipe/sox pipe) is
tested on the decision function only.
"""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_blsp.data.corpora import CORPORA, prepare
from espnet_blsp.data.corpora import tedlium as tedlium_mod
from espnet_blsp.data.corpora.gigaspeech import map_punctuation
from espnet_blsp.data.kaldi_dir import DataDirError, check_data_dir, read_kv
from espnet_blsp.utils.audio import iter_kaldi_audio

REPO = Path(__file__).resolve().parents[1]


def audio(path: Path, seconds: float, fmt: str = "WAV", sr: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format=fmt)
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def abs_(p: Path) -> str:
    return str(p.resolve())


# ------------------------------------------------------------------ LibriSpeech
def make_librispeech(root: Path) -> Path:
    d = root / "LibriSpeech" / "test-clean"
    write(d / "1089/134686/1089-134686.trans.txt",
          "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n"
          "1089-134686-0001 STUFF IT INTO YOU I SAID\n"
          "1089-134686-0002\n"  # empty transcript
          "1089-134686-0003 NO AUDIO FOR THIS ONE\n")  # flac missing
    write(d / "121/121726/121-121726.trans.txt", "121-121726-0000 ALSO A POPULAR CONTRIVANCE\n")
    for utt in ("1089-134686-0000", "1089-134686-0001", "1089-134686-0002"):
        audio(d / "1089/134686" / f"{utt}.flac", 0.5, "FLAC")
    audio(d / "121/121726/121-121726-0000.flac", 0.5, "FLAC")
    return root


def test_librispeech(tmp_path, caplog):
    root = make_librispeech(tmp_path / "corpus")
    sub = root / "LibriSpeech" / "test-clean"
    out = tmp_path / "data" / "test_clean"
    with caplog.at_level(logging.INFO):
        prepare("librispeech", root, out, subset="test_clean")  # "_" accepted for "-"
    f1 = abs_(sub / "1089/134686/1089-134686-0000.flac")
    f2 = abs_(sub / "1089/134686/1089-134686-0001.flac")
    f3 = abs_(sub / "121/121726/121-121726-0000.flac")
    assert (out / "wav.scp").read_text() == f"1089-134686-0000 {f1}\n1089-134686-0001 {f2}\n121-121726-0000 {f3}\n"
    assert (out / "text").read_text() == (
        "1089-134686-0000 he hoped there would be stew for dinner\n"
        "1089-134686-0001 stuff it into you i said\n"
        "121-121726-0000 also a popular contrivance\n")
    assert read_kv(out / "text.prompt") == {
        "1089-134686-0000": "He hoped there would be stew for dinner",
        "1089-134686-0001": "Stuff it into you I said",
        "121-121726-0000": "Also a popular contrivance"}
    assert read_kv(out / "text.orig")["1089-134686-0001"] == "STUFF IT INTO YOU I SAID"
    assert (out / "utt2spk").read_text() == "1089-134686-0000 1089\n1089-134686-0001 1089\n121-121726-0000 121\n"
    assert (out / "spk2utt").read_text() == "1089 1089-134686-0000 1089-134686-0001\n121 121-121726-0000\n"
    assert not (out / "segments").exists()
    missing = abs_(sub / "1089/134686") + "/1089-134686-0003.flac"
    assert read_kv(out / "excluded.txt") == {
        "1089-134686-0002": "empty transcript",
        "1089-134686-0003": f"missing audio file: {missing}"}
    assert "3 utterances, 2 excluded (1 empty transcript, 1 missing audio file" in caplog.text
    assert (out / ".done").exists() and not list(out.parent.glob(".*.tmp"))
    check_data_dir(out)


def test_idempotent_and_redone_without_done_marker(tmp_path, caplog):
    root = make_librispeech(tmp_path / "corpus")
    out = tmp_path / "data" / "test_clean"
    prepare("librispeech", root, out, subset="test-clean")
    write(out / "text", "tampered\n")
    with caplog.at_level(logging.INFO):
        prepare("librispeech", root, out, subset="test-clean")
    assert "already prepared" in caplog.text and (out / "text").read_text() == "tampered\n"
    (out / ".done").unlink()  # an interrupted run: no marker -> redone from scratch
    prepare("librispeech", root, out, subset="test-clean")
    assert len(read_kv(out / "text")) == 3


def test_missing_corpus_dir_and_subset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"librispeech: corpus dir not found: .*/nowhere"):
        prepare("librispeech", tmp_path / "nowhere", tmp_path / "out", subset="test-clean")
    root = make_librispeech(tmp_path / "corpus")
    with pytest.raises(FileNotFoundError, match="LibriSpeech subset 'dev-other' not found"):
        prepare("librispeech", root, tmp_path / "out", subset="dev-other")
    assert not (tmp_path / "out").exists()


def test_duplicate_ids_and_non_utf8(tmp_path):
    root = make_librispeech(tmp_path / "corpus")
    trans = root / "LibriSpeech/test-clean/121/121726/121-121726.trans.txt"
    write(trans, "121-121726-0000 ALSO A POPULAR CONTRIVANCE\n121-121726-0000 SAID AGAIN\n")
    out = tmp_path / "out"
    prepare("librispeech", root, out, subset="test-clean")
    assert "121-121726-0000" not in read_kv(out / "text")
    assert read_kv(out / "excluded.txt")["121-121726-0000"].startswith("duplicate utterance id (2 entries")
    trans.write_bytes(b"121-121726-0000 ALSO A POPULAR\n121-121726-0001 CAF\xc9 AU LAIT\n")
    with pytest.raises(DataDirError, match=r"121-121726\.trans\.txt:2: not UTF-8"):
        prepare("librispeech", root, tmp_path / "out2", subset="test-clean")


def test_nothing_kept_is_an_error(tmp_path):
    root = tmp_path / "corpus"
    write(root / "test-clean/1/2/1-2.trans.txt", "1-2-0000 NO AUDIO\n")
    with pytest.raises(DataDirError, match=r"no utterances kept .*1 missing audio file"):
        prepare("librispeech", root, tmp_path / "out", subset="test-clean")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ GigaSpeech
def test_gigaspeech(tmp_path):
    root = tmp_path / "gigaspeech"
    a1 = audio(root / "audio/podcast/P0000/POD0000000001.opus", 3.0, "OGG")
    a2 = audio(root / "audio/youtube/P0001/YOU0000000002.opus", 2.0, "OGG")
    meta = {"audios": [
        {"aid": "POD0000000001", "path": "audio/podcast/P0000/POD0000000001.opus", "segments": [
            {"sid": "POD0000000001_S0000000", "begin_time": 0.0, "end_time": 1.0, "subsets": ["{XL}", "{L}", "{M}"],
             "text_tn": "AS THEY'RE LEAVING <COMMA> CAN KASH PULL ZAHRA ASIDE REALLY QUICKLY <QUESTIONMARK>"},
            {"sid": "POD0000000001_S0000001", "begin_time": 1.0, "end_time": 2.0, "subsets": ["{XL}", "{M}"],
             "text_tn": "<MUSIC>"},
            {"sid": "POD0000000001_S0000002", "begin_time": 2.0, "end_time": 2.5, "subsets": ["{XL}"],
             "text_tn": "NOT IN M <PERIOD>"},
        ]},
        {"aid": "YOU0000000002", "path": "audio/youtube/P0001/YOU0000000002.opus", "segments": [
            {"sid": "YOU0000000002_S0000000", "begin_time": 0.25, "end_time": 1.75, "subsets": ["{M}"],
             "text_tn": "WELL <COMMA> I THINK SO <EXCLAMATIONPOINT>"},
            {"sid": "YOU0000000002_S0000001", "begin_time": 1.75, "end_time": 2.0, "subsets": ["{M}"],
             "text_tn": "OKAY <NOISE> SURE"},
        ]},
    ]}
    write(root / "GigaSpeech.json", json.dumps(meta))
    out = tmp_path / "data/giga_m"
    prepare("gigaspeech", root, out, subset="m")
    assert (out / "wav.scp").read_text() == f"POD0000000001 {abs_(a1)}\nYOU0000000002 {abs_(a2)}\n"
    assert (out / "segments").read_text() == (
        "POD0000000001_S0000000 POD0000000001 0 1\nYOU0000000002_S0000000 YOU0000000002 0.25 1.75\n")
    assert read_kv(out / "text.orig") == {
        "POD0000000001_S0000000": "AS THEY'RE LEAVING, CAN KASH PULL ZAHRA ASIDE REALLY QUICKLY?",
        "YOU0000000002_S0000000": "WELL, I THINK SO!"}
    assert read_kv(out / "text") == {
        "POD0000000001_S0000000": "as they are leaving can kash pull zahra aside really quickly",
        "YOU0000000002_S0000000": "well i think so"}
    assert read_kv(out / "text.prompt") == {
        "POD0000000001_S0000000": "As they're leaving, can kash pull zahra aside really quickly?",
        "YOU0000000002_S0000000": "Well, I think so!"}
    assert read_kv(out / "utt2spk") == {"POD0000000001_S0000000": "POD0000000001",
                                        "YOU0000000002_S0000000": "YOU0000000002"}
    excluded = read_kv(out / "excluded.txt")
    assert sorted(excluded) == ["POD0000000001_S0000001", "YOU0000000002_S0000001"]
    assert excluded["POD0000000001_S0000001"].startswith("garbage/unknown tag: <MUSIC>")
    # the opus audio decodes and the segments cut the right lengths
    lengths = {u: len(x) for u, x in iter_kaldi_audio(out, 16000)}
    assert lengths == {"POD0000000001_S0000000": 16000, "YOU0000000002_S0000000": 24000}
    with pytest.raises(ValueError, match="unknown GigaSpeech subset 'XXL'"):
        prepare("gigaspeech", root, tmp_path / "x", subset="XXL")


def test_gigaspeech_punctuation_tags():
    assert map_punctuation("HI <COMMA> YOU <QUESTIONMARK> <PERIOD>") == "HI, YOU?."


# ------------------------------------------------------------------ Common Voice / CoVoST 2
CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"


def make_commonvoice(root: Path) -> Path:
    write(root / "test.tsv", CV_HEADER
          + "aaaaaaaaaaaaaaaa1111\tcommon_voice_en_1.mp3\tThe quick brown fox.\t2\t0\t\t\t\ten\t\n"
          + 'bbbbbbbbbbbbbbbb2222\tcommon_voice_en_2.mp3\t"Hello," she said.\t2\t0\t\t\t\ten\t\n'
          + "cccccccccccccccc3333\tcommon_voice_en_3.mp3\tNo clip here.\t2\t0\t\t\t\ten\t\n")
    audio(root / "clips/common_voice_en_1.mp3", 1.0, "MP3")
    audio(root / "clips/common_voice_en_2.mp3", 1.0, "MP3")
    return root


def test_commonvoice(tmp_path):
    root = make_commonvoice(tmp_path / "cv")
    out = tmp_path / "data/cv_test"
    prepare("commonvoice", root, out, subset="test")
    u1, u2 = "aaaaaaaaaaaaaaaa-common_voice_en_1", "bbbbbbbbbbbbbbbb-common_voice_en_2"
    assert read_kv(out / "wav.scp") == {u1: abs_(root / "clips/common_voice_en_1.mp3"),
                                        u2: abs_(root / "clips/common_voice_en_2.mp3")}
    assert read_kv(out / "text") == {u1: "the quick brown fox", u2: "hello she said"}
    assert read_kv(out / "text.prompt") == {u1: "The quick brown fox.", u2: '"Hello," she said.'}
    assert read_kv(out / "utt2spk") == {u1: "aaaaaaaaaaaaaaaa", u2: "bbbbbbbbbbbbbbbb"}
    assert list(read_kv(out / "excluded.txt")) == ["cccccccccccccccc-common_voice_en_3"]
    assert all(abs(len(x) - 16000) < 1200 for _, x in iter_kaldi_audio(out))  # mp3 decodes


def test_covost2_split_tsv_and_release_tsv(tmp_path):
    root = tmp_path / "covost"
    cv = make_commonvoice(tmp_path / "cv")
    write(root / "covost_v2.en_de.test.tsv", "path\tsentence\ttranslation\tclient_id\n"
          "common_voice_en_1.mp3\tThe quick brown fox.\tDer schnelle braune Fuchs.\taaaaaaaaaaaaaaaa1111\n"
          "common_voice_en_2.mp3\t\"Hello,\" she said.\t\tbbbbbbbbbbbbbbbb2222\n")  # empty translation
    out = tmp_path / "data/covost_de"
    prepare("covost2", root, out, subset="test", lang="de", audio_dir=str(cv))
    u1, u2 = "aaaaaaaaaaaaaaaa-common_voice_en_1", "bbbbbbbbbbbbbbbb-common_voice_en_2"
    assert read_kv(out / "text") == {u1: "the quick brown fox"}
    assert read_kv(out / "translation") == {u1: "Der schnelle braune Fuchs."}
    assert read_kv(out / "lang") == {u1: "de"}
    assert read_kv(out / "excluded.txt") == {u2: "empty translation"}
    # the release tsv (path, translation, split) joined with Common Voice's validated.tsv
    write(root / "covost_v2.en_fr.tsv", "path\ttranslation\tsplit\n"
          "common_voice_en_1.mp3\tLe renard.\ttest\ncommon_voice_en_2.mp3\tBonjour.\ttrain\n")
    (cv / "test.tsv").rename(cv / "validated.tsv")
    out_fr = tmp_path / "data/covost_fr"
    prepare("covost2", root, out_fr, subset="test", lang="fr", audio_dir=str(cv))
    assert read_kv(out_fr / "translation") == {u1: "Le renard."}
    assert read_kv(out_fr / "text.prompt") == {u1: "The quick brown fox."}
    with pytest.raises(ValueError, match=r"needs \['lang'\]"):
        prepare("covost2", root, tmp_path / "x", subset="test")


# ------------------------------------------------------------------ TED-LIUM 3
def test_tedlium3(tmp_path):
    root = tmp_path / "TEDLIUM_release-3"
    part = root / "legacy/test"
    sph = audio(part / "sph/AaronHuey_2010X.sph", 5.0, "NIST")
    write(part / "stm/AaronHuey_2010X.stm",
          ";; comment line\n"
          "AaronHuey_2010X 1 AaronHuey_2010X 0.50 2.00 <o,f0,male> i 'm here today <unk> to show\n"
          "AaronHuey_2010X 1 AaronHuey_2010X 2.00 3.00 <o,f0,male> ignore_time_segment_in_scoring\n"
          "AaronHuey_2010X 1 AaronHuey_2010X 3.00 4.25 <o,f0,male> <unk>\n"
          "AaronHuey_2010X 1 AaronHuey_2010X 4.25 5.00 <o,f0,male> we do n't know\n")
    out = tmp_path / "data/tedlium_test"
    prepare("tedlium3", tmp_path, out, subset="test")  # parent of TEDLIUM_release-3, legacy/test
    u1, u2 = "AaronHuey_2010X-0000050-0000200", "AaronHuey_2010X-0000425-0000500"
    assert (out / "wav.scp").read_text() == f"AaronHuey_2010X {abs_(sph)}\n"
    assert (out / "segments").read_text() == f"{u1} AaronHuey_2010X 0.5 2\n{u2} AaronHuey_2010X 4.25 5\n"
    assert read_kv(out / "text") == {u1: "i am here today to show", u2: "we do not know"}
    assert read_kv(out / "text.prompt") == {u1: "I'm here today to show", u2: "We don't know"}
    assert read_kv(out / "text.orig")[u1] == "i 'm here today <unk> to show"
    excluded = read_kv(out / "excluded.txt")
    assert excluded["AaronHuey_2010X-0000200-0000300"].startswith("ignore_time_segment_in_scoring")
    assert excluded["AaronHuey_2010X-0000300-0000425"] == "transcript is empty after normalisation: '<unk>'"
    assert {u: len(x) for u, x in iter_kaldi_audio(out)} == {u1: 24000, u2: 12000}  # the .sph decodes


def test_tedlium_sph_fallback_decision(tmp_path, monkeypatch):
    sph = audio(tmp_path / "a.sph", 0.5, "NIST")
    assert tedlium_mod.sph_wav_scp(sph) == str(sph)  # libsndfile reads plain SPHERE
    bad = tmp_path / "shorten.sph"
    bad.write_bytes(b"NIST_1A\n   1024\nsample_coding -s8 pcm,embedded-shorten-v2.00\nend_head\n" + b"\0" * 1000)
    monkeypatch.setattr(tedlium_mod.shutil, "which", lambda name: f"/opt/bin/{name}" if name == "sph2pipe" else None)
    assert tedlium_mod.sph_wav_scp(bad, "1") == f"sph2pipe -f wav -p -c 1 {bad} |"
    monkeypatch.setattr(tedlium_mod.shutil, "which", lambda name: None)
    assert tedlium_mod.sph_wav_scp(bad) is None


# ------------------------------------------------------------------ MuST-C
def test_mustc(tmp_path):
    split = tmp_path / "MUSTC_v1.0/en-de/data/tst-COMMON"
    wav = audio(split / "wav/ted_767.wav", 4.0)
    write(split / "txt/tst-COMMON.yaml",
          "- {duration: 1.5, offset: 0.5, rW: 3, uW: 0, speaker_id: spk.767, wav: ted_767.wav}\n"
          "- {duration: 1.0, offset: 2.25, rW: 3, uW: 0, speaker_id: spk.767, wav: ted_767.wav}\n"
          "- {duration: 1.0, offset: 0.0, rW: 1, uW: 0, speaker_id: spk.1000, wav: ted_1000.wav}\n")
    write(split / "txt/tst-COMMON.en", "And we 're told that .\nThank you very much.\nHi.\n")
    write(split / "txt/tst-COMMON.de", "Und man sagt uns.\nVielen Dank.\nHallo.\n")
    out = tmp_path / "data/mustc_de"
    prepare("mustc", tmp_path / "MUSTC_v1.0", out, subset="tst_common", lang="de")
    u1, u2 = "spk.767-ted_767-0000050-0000200", "spk.767-ted_767-0000225-0000325"
    assert (out / "wav.scp").read_text() == f"ted_767 {abs_(wav)}\n"
    assert (out / "segments").read_text() == f"{u1} ted_767 0.5 2\n{u2} ted_767 2.25 3.25\n"
    assert read_kv(out / "text") == {u1: "and we are told that", u2: "thank you very much"}
    assert read_kv(out / "text.prompt") == {u1: "And we're told that.", u2: "Thank you very much."}
    assert read_kv(out / "translation") == {u1: "Und man sagt uns.", u2: "Vielen Dank."}
    assert read_kv(out / "lang") == {u1: "de", u2: "de"}
    assert read_kv(out / "utt2spk") == {u1: "spk.767", u2: "spk.767"}
    assert list(read_kv(out / "excluded.txt")) == ["spk.1000-ted_1000-0000000-0000100"]
    write(split / "txt/tst-COMMON.de", "Und man sagt uns.\n")
    with pytest.raises(DataDirError, match=r"yaml has 3 segments but tst-COMMON.en has 3 lines and tst-COMMON.de has 1"):
        prepare("mustc", tmp_path / "MUSTC_v1.0", tmp_path / "x", subset="tst-COMMON", lang="de")


# ------------------------------------------------------------------ SNIPS
def test_snips_official_layout(tmp_path):
    root = tmp_path / "snips_slu_data_v1.0/smart-lights-en-close-field"
    dataset = {"intents": {
        "SwitchLightOn": {"utterances": [{"data": [
            {"text": "turn on the lights in the "}, {"text": "kitchen", "entity": "room", "slot_name": "room"}]}]},
        "SetLightColor": {"utterances": [{"data": [
            {"text": "make the lights "}, {"text": "red", "entity": "color", "slot_name": "color"}]}]},
    }}
    write(root / "dataset.json", json.dumps(dataset))
    write(root / "speech_corpus/metadata.json", json.dumps({
        "0": {"filename": "0.wav", "text": "Turn on the lights in the kitchen", "worker": {"id": "w1"}},
        "1": {"filename": "1.wav", "text": "Make the lights red.", "worker": {"id": "w2"}},
        "2": {"filename": "2.wav", "text": "Something else", "worker": {"id": "w1"}},
    }))
    for i in range(3):
        audio(root / f"speech_corpus/audio/{i}.wav", 0.5)
    out = tmp_path / "data/snips"
    prepare("snips", tmp_path / "snips_slu_data_v1.0", out)
    assert read_kv(out / "label") == {"w1-0": "SwitchLightOn", "w2-1": "SetLightColor"}
    assert read_kv(out / "text") == {"w1-0": "turn on the lights in the kitchen", "w2-1": "make the lights red"}
    assert read_kv(out / "wav.scp") == {"w1-0": abs_(root / "speech_corpus/audio/0.wav"),
                                        "w2-1": abs_(root / "speech_corpus/audio/1.wav")}
    assert read_kv(out / "excluded.txt")["w1-2"].startswith("intent unknown: the text 'Something else' matches no utterance")


def test_snips_simple_layout(tmp_path):
    root = tmp_path / "snips"
    audio(root / "wavs/a.wav", 0.5)
    audio(root / "wavs/b.wav", 0.5)
    write(root / "test.tsv", "path\ttranscript\tintent\tspeaker\n"
          "wavs/a.wav\tswitch off the lights\tSwitchLightOff\ts1\nwavs/b.wav\tbrighter please\tIncreaseBrightness\ts2\n")
    out = tmp_path / "data/snips"
    prepare("snips", root, out, subset="test")
    assert read_kv(out / "label") == {"s1-a": "SwitchLightOff", "s2-b": "IncreaseBrightness"}
    assert read_kv(out / "utt2spk") == {"s1-a": "s1", "s2-b": "s2"}


# ------------------------------------------------------------------ FSC
def test_fsc(tmp_path):
    root = tmp_path / "fluent_speech_commands_dataset"
    s1, s2 = "4BrX8aDqK2cLZRYl", "ZebMRl5Z7dhrPKRD"
    rows = [(f"wavs/speakers/{s1}/a1.wav", s1, "Turn on the lights", "activate", "lights", "none"),
            (f"wavs/speakers/{s1}/a2.wav", s1, "Switch to Chinese", "change language", "Chinese", "none"),
            (f"wavs/speakers/{s2}/b1.wav", s2, '"Heat up, kitchen"', "increase", "heat", "kitchen"),
            (f"wavs/speakers/{s2}/b2.wav", s2, "Language", "change language", "none", "none")]
    write(root / "data/valid_data.csv", ",path,speakerId,transcription,action,object,location\n"
          + "".join(f"{i},{','.join(r)}\n" for i, r in enumerate(rows)))
    for r in rows:
        audio(root / r[0], 0.5)
    out = tmp_path / "data/fsc_valid"
    prepare("fsc", tmp_path, out, subset="dev")  # dev -> valid; root may be the parent dir
    assert read_kv(out / "label") == {
        "4BrX8aDqK2cLZRYl-a1": "activate lights", "4BrX8aDqK2cLZRYl-a2": "change language Chinese",
        "ZebMRl5Z7dhrPKRD-b1": "increase heat", "ZebMRl5Z7dhrPKRD-b2": "change language none"}
    assert read_kv(out / "text.prompt")["ZebMRl5Z7dhrPKRD-b1"] == "Heat up, kitchen"  # csv quoting honoured
    assert read_kv(out / "utt2spk")["ZebMRl5Z7dhrPKRD-b1"] == "ZebMRl5Z7dhrPKRD"


# ------------------------------------------------------------------ SLUE-VoxCeleb
def test_slue_voxceleb(tmp_path):
    root = tmp_path / "slue-voxceleb"
    ids = ["id10012_0AXjxNXiEzo_00001", "id10012_0AXjxNXiEzo_00002", "id10013_xyz_00001", "id10013_xyz_00002"]
    write(root / "slue-voxceleb_dev.tsv", "id\tnormalized_text\tspeaker_id\tsplit\tsentiment\tstart_second\tend_second\n"
          f"{ids[0]}\tand i was like\tid10012\tdev\tNeutral\t0.5\t2.0\n"
          f"{ids[1]}\ti love it\tid10012\tdev\tPositive\t0.0\t1.0\n"
          f"{ids[2]}\tno idea\tid10013\tdev\tDisagreement\t0\t1\n"
          f"{ids[3]}\tit was awful\tid10013\tdev\tNegative\t0.25\t1.25\n")
    for i in ids:
        audio(root / f"dev_raw/{i}.flac", 2.5, "FLAC")
    out = tmp_path / "data/slue_dev"
    prepare("slue_voxceleb", tmp_path, out, subset="dev")
    assert read_kv(out / "label") == {ids[0]: "neutral", ids[1]: "positive", ids[3]: "negative"}
    assert (out / "segments").read_text() == (
        f"{ids[0]} {ids[0]} 0.5 2\n{ids[1]} {ids[1]} 0 1\n{ids[3]} {ids[3]} 0.25 1.25\n")
    assert read_kv(out / "utt2spk") == {ids[0]: "id10012", ids[1]: "id10012", ids[3]: "id10013"}
    assert read_kv(out / "excluded.txt")[ids[2]].startswith("sentiment 'Disagreement' is not one of")
    assert {u: len(x) for u, x in iter_kaldi_audio(out)} == {ids[0]: 24000, ids[1]: 16000, ids[3]: 16000}


# ------------------------------------------------------------------ existing Kaldi dir
def test_kaldi_dir_copy(tmp_path):
    src = tmp_path / "src/test"
    a, b = audio(tmp_path / "wav/a.wav", 3.0), audio(tmp_path / "wav/b.wav", 1.0)
    write(src / "wav.scp", f"recA {a}\nrecB {b}\nrecC {tmp_path / 'wav/missing.wav'}\nrecD cat {b} |\n")
    write(src / "segments", "s1-u1 recA 0 1.5\ns1-u2 recA 1.5 3\ns2-u1 recB 0 1\n"
                            "s2-u2 recC 0 1\ns2-u3 recD 0 1\ns2-u4 recB 0 1\n")
    write(src / "text", "s1-u1 HELLO THERE\ns1-u2 GOOD MORNING\ns2-u1 uh\ns2-u2 MISSING AUDIO\n"
                        "s2-u3 PIPED AUDIO\ns2-u4 NO TRANSLATION\ns9-u9 NO AUDIO\n")
    write(src / "translation", "s1-u1 hallo\ns1-u2 guten Morgen\ns2-u1 äh\ns2-u2 x\ns2-u3 y\n")
    write(src / "utt2spk", "s1-u1 s1\ns1-u2 s1\ns2-u1 s2\ns2-u2 s2\ns2-u3 s2\ns2-u4 s2\n")
    out = tmp_path / "data/test"
    prepare("kaldi", tmp_path / "src", out, subset="test")
    assert read_kv(out / "text") == {"s1-u1": "hello there", "s1-u2": "good morning", "s2-u3": "piped audio"}
    assert read_kv(out / "text.prompt") == {"s1-u1": "Hello there", "s1-u2": "Good morning", "s2-u3": "Piped audio"}
    assert read_kv(out / "wav.scp") == {"recA": str(a), "recD": f"cat {b} |"}  # recB/recC lost all segments
    assert read_kv(out / "translation") == {"s1-u1": "hallo", "s1-u2": "guten Morgen", "s2-u3": "y"}
    assert read_kv(out / "excluded.txt") == {
        "s2-u1": "transcript is empty after normalisation: 'uh'",
        "s2-u2": f"missing audio file: {tmp_path / 'wav/missing.wav'}",
        "s2-u4": "no entry in translation",
        "s9-u9": "no audio: in text but not in segments"}
    check_data_dir(out)


# ------------------------------------------------------------------ registry and CLI
def test_registry_and_options(tmp_path):
    assert sorted(CORPORA) == ["commonvoice", "covost2", "fsc", "gigaspeech", "kaldi", "librispeech", "mustc",
                               "slue_voxceleb", "snips", "tedlium3"]
    with pytest.raises(ValueError, match="unknown corpus 'timit'"):
        prepare("timit", tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match=r"does not take \['lang'\]"):
        prepare("librispeech", tmp_path, tmp_path / "out", subset="test-clean", lang="de")
    with pytest.raises(ValueError, match=r"needs \['subset'\]"):
        prepare("librispeech", tmp_path, tmp_path / "out", subset="")


def test_cli(tmp_path):
    import runpy

    root = make_librispeech(tmp_path / "corpus")
    out = tmp_path / "data/test_clean"
    mod = runpy.run_path(str(REPO / "local/data_prep.py"), run_name="data_prep")
    mod["main"](["--corpus", "librispeech", "--src", str(root), "--dst", str(out), "--subset", "test-clean"])
    assert len(read_kv(out / "text")) == 3 and (out / ".done").exists()
    with pytest.raises(SystemExit):
        mod["main"](["--corpus", "timit", "--src", str(root), "--dst", str(out)])
