"""Diagnostic sets of the 2026-12-03 experiment (RESULTS.md; run from egs2/blsp of a trained mini run, via
experiments_cpu_2026-12-03/run_diag.sh; needs Debian flite): the LibriVox transcripts spoken by the training voice
(piper joe) and by flite slt/rms, and 40 mini_test sentences in the flite voices slt/rms/awb."""
import subprocess, sys, os
from pathlib import Path
import soundfile
sys.path.insert(0, "local/mini")
from make_corpus import synthesize, write_dir, SR
from espnet_blsp.utils.audio import resample

root = Path("diag").resolve()
def texts(d, n=None):
    rows = [l.rstrip("\n").split(" ", 1) for l in open(f"data/{d}/text", encoding="utf-8")]
    return rows[:n] if n else rows

def flite(voice, text, path):
    tmp = path + ".tmp.wav"
    subprocess.run(["flite", "-voice", voice, "-t", text, "-o", tmp], check=True)
    a, sr = soundfile.read(tmp, dtype="float32"); os.remove(tmp)
    soundfile.write(path, resample(a, sr, SR), SR)

sets = {"lv_joe": ("real_librivox", None, "joe"), "lv_slt": ("real_librivox", None, "slt"),
        "lv_rms": ("real_librivox", None, "rms"),
        "test_slt": ("mini_test", 40, "slt"), "test_rms": ("mini_test", 40, "rms"), "test_awb": ("mini_test", 40, "awb")}
for name, (src, n, voice) in sets.items():
    wd = root / "wav" / name; wd.mkdir(parents=True, exist_ok=True)
    rows = {}
    for utt, text in texts(src, n):
        u = f"{voice}-{utt}"
        p = str(wd / f"{u}.wav")
        if voice == "joe":
            _, err = synthesize((u, text, p, 1.0, 0.667)); assert not err, err
        else:
            flite(voice, text, p)
        rows[u] = (p, text)
    write_dir(root / "data" / name, rows)
    print(name, len(rows))
