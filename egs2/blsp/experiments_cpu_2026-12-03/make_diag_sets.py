"""Diagnostic sets of the 2026-12-03 experiment (RESULTS.md; run from egs2/blsp of a trained mini run, via
experiments_cpu_2026-12-03/run_diag.sh; needs Debian flite): the LibriVox transcripts spoken by the training voice
(piper joe) and by flite slt/rms, and 40 mini_test sentences in the flite voices slt/rms/awb."""
import sys
from pathlib import Path
sys.path.insert(0, "local/mini")
from make_corpus import synthesize, write_dir  # the voice is the utterance id's prefix

root = Path("diag").resolve()
def texts(d, n=None):
    rows = [l.rstrip("\n").split(" ", 1) for l in open(f"data/{d}/text", encoding="utf-8")]
    return rows[:n] if n else rows

sets = {"lv_joe": ("real_librivox", None, "joe"), "lv_slt": ("real_librivox", None, "slt"),
        "lv_rms": ("real_librivox", None, "rms"),
        "test_slt": ("mini_test", 40, "slt"), "test_rms": ("mini_test", 40, "rms"), "test_awb": ("mini_test", 40, "awb")}
for name, (src, n, voice) in sets.items():
    wd = root / "wav" / name; wd.mkdir(parents=True, exist_ok=True)
    rows = {}
    for utt, text in texts(src, n):
        u = f"{voice}-{utt}"
        p = str(wd / f"{u}.wav")
        _, err = synthesize((u, text, p, 1.0, 0.667)); assert not err, err
        rows[u] = (p, text)
    write_dir(root / "data" / name, rows)
    print(name, len(rows))
