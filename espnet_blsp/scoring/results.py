"""Collect the ``score.json`` files of decode directories into ``RESULTS.md``.

Directory naming contract
-------------------------
A *system dir* holds the decodings of one system, one dir per task and test set::

    <system_dir>/decode_<task>_<testset>/text                     hypotheses (stage 5)
    <system_dir>/decode_<task>_<testset>/score/score.json         headline metric (stage 6)
    <system_dir>/decode_st_<testset>/score_self/score.json        ST Self-BLEU vs Text+LLM
    <system_dir>/decode_asr_<testset>/asr_text                    standalone Whisper transcripts
    <system_dir>/decode_asr_<testset>/score_whisper/score.json    ... and their WER

``<task>`` is a key of ``TASKS`` (no underscores: asr st snips fsc slue continuation qa);
``<testset>`` is the name of ``<data_root>/<testset>`` and may contain underscores.

An experiment ``exp/<tag>`` is the system dir of its trained model and holds its
baselines, decoded with the same instructions::

    exp/<tag>/baselines/text_llm      Text+LLM     (the transcript is the input)
    exp/<tag>/baselines/whisper_llm   Whisper+LLM  (Whisper transcribes, the LLM answers)
    exp/<tag>/baselines/untrained     the model with its adapter at random init (a floor)
    exp/<tag>/curves/learning_curve.{md,png}   learning curves (``bin/learning_curve``), if made
    exp/<tag>/analysis/analysis.md         representation analysis (``bin/analyze``), if made
    exp/<tag>/analysis/asr_probe/asr_probe.md   ASR probe (``bin/asr_probe``), if made

Rows of the table, in this order, each only if its dir exists: ``Text+LLM`` and
``Whisper+LLM`` (from the first ``--exp``), one row per ``--exp`` (named ``<tag>``), one
per ``--system NAME=DIR`` (a ``--system`` whose NAME is ``Text+LLM``, ``Whisper+LLM`` or
``untrained adapter`` replaces that default row), then ``untrained adapter`` (first ``--exp``).

References, when scoring (``--score``): ``<data_root>/<testset>/text`` for asr,
``.../translation`` for st, ``.../label`` for snips/fsc/slue, and the Text+LLM row's
``decode_<task>_<testset>/text`` for continuation and qa (Self-BLEU / Self-ROUGE-L) and
for the ST Self-BLEU.
"""

import datetime
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from espnet_blsp.scoring import curves, scorers
from espnet_blsp.scoring.tables import read_score


@dataclass(frozen=True)
class Task:
    """How a task is scored and shown.

    ``metric``: wer | bleu | slu | self; ``ref_name``: the reference file under
    ``<data_root>/<testset>`` (None: the Text+LLM outputs); ``header``: the column title.
    """

    metric: str
    ref_name: Optional[str]
    header: str


# Column order of the table follows this order (BLSP Table 2, then BLSP-KD Tables 1-2).
TASKS: Dict[str, Task] = {
    "asr": Task("wer", "text", "ASR WER↓"),
    "st": Task("bleu", "translation", "ST BLEU↑"),
    "snips": Task("slu", "label", "SNIPS ACC↑"),
    "fsc": Task("slu", "label", "FSC ACC↑"),
    "slue": Task("slu", "label", "SLUE ACC↑"),
    "continuation": Task("self", None, "Continuation Self-BLEU / Self-ROUGE-L↑"),
    "qa": Task("self", None, "QA Self-BLEU / Self-ROUGE-L↑"),
}
DEFAULT_ROWS = {"text_llm": "Text+LLM", "whisper_llm": "Whisper+LLM", "untrained": "untrained adapter"}
_DECODE_RE = re.compile(r"^decode_([a-z]+)_(.+)$")


def parse_decode_dir(name: str) -> Tuple[str, str]:
    """``decode_<task>_<testset>`` -> (task, testset); raises on other names or unknown tasks."""
    m = _DECODE_RE.match(name)
    if not m:
        raise ValueError(f"{name!r} is not named decode_<task>_<testset>")
    if m.group(1) not in TASKS:
        raise ValueError(f"{name!r}: unknown task {m.group(1)!r}; known: {' '.join(TASKS)}")
    return m.group(1), m.group(2)


@dataclass
class System:
    """One row: a name and the system dir holding its ``decode_*`` dirs."""

    name: str
    path: Path
    decodes: Dict[Tuple[str, str], Path] = field(default_factory=dict)  # (task, testset) -> dir


def find_decodes(system_dir: Path, warn: Callable[[str], None]) -> Dict[Tuple[str, str], Path]:
    out = {}
    for d in sorted(Path(system_dir).glob("decode_*")):
        if not d.is_dir():
            continue
        try:
            out[parse_decode_dir(d.name)] = d
        except ValueError as e:
            warn(f"{system_dir}: skipped: {e}")
    return out


def make_systems(exps: Sequence[Path], extra: Sequence[Tuple[str, Path]],
                 warn: Callable[[str], None] = lambda s: print(f"WARNING: {s}", file=sys.stderr)) -> List[System]:
    """The rows, in table order (see the module docstring); dirs that don't exist are left out."""
    if not exps and not extra:
        raise ValueError("give at least one --exp or --system")
    for p in exps:
        if not Path(p).is_dir():
            raise FileNotFoundError(f"experiment dir {p} not found")
    given = dict(extra)
    if len(given) != len(extra):
        raise ValueError(f"--system names must differ: {[n for n, _ in extra]}")
    base = Path(exps[0]) / "baselines" if exps else None
    default = {name: base / sub for sub, name in DEFAULT_ROWS.items()} if base else {}
    default.update({n: Path(p) for n, p in extra if n in DEFAULT_ROWS.values()})
    rows: List[Tuple[str, Path]] = [(n, default[n]) for n in ("Text+LLM", "Whisper+LLM") if n in default]
    rows += [(Path(p).resolve().name, Path(p)) for p in exps]
    rows += [(n, Path(p)) for n, p in extra if n not in DEFAULT_ROWS.values()]
    rows += [(n, default[n]) for n in ("untrained adapter",) if n in default]
    names = [n for n, _ in rows]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"two rows named {dup}: give --system NAME=DIR with distinct names")
    for n, p in extra:
        if not Path(p).is_dir():
            raise FileNotFoundError(f"--system {n}={p}: no such dir")
    return [System(n, p, find_decodes(p, warn)) for n, p in rows if p.is_dir()]


# ---------------------------------------------------------------------- scoring

def parse_st_lang(spec: str) -> Callable[[str], str]:
    """``"de"`` (every ST set) or ``"covost_de=de mustc_fr=fr"`` (per set) -> set -> language."""
    items = spec.split()
    if len(items) == 1 and "=" not in items[0]:
        return lambda testset: items[0]
    table = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise ValueError(f"--st_lang: expected a language or testset=lang pairs, got {it!r}")
        table[k] = v

    def lookup(testset: str) -> str:
        if testset not in table:
            raise ValueError(f"--st_lang gives no target language for test set {testset}")
        return table[testset]
    return lookup


def score_systems(systems: Sequence[System], data_root: Path, st_lang: Callable[[str], str],
                  allow_missing: bool = False,
                  warn: Callable[[str], None] = lambda s: print(f"WARNING: {s}", file=sys.stderr),
                  dump_root: Optional[Path] = None) -> List[str]:
    """Score every decode dir of every system; returns the problems (one line each).

    A task whose reference does not exist for a test set (e.g. st on an ASR-only set) is
    skipped with a warning; any other failure is a problem, and its cell reads ``error``.
    Utterances that stage 2 excluded (``<dump_root>/<testset>/excluded.txt``) are not scored.
    """
    text_llm = next((s for s in systems if s.name == "Text+LLM"), None)
    problems = []
    for s in systems:
        for (task, testset), d in sorted(s.decodes.items()):
            hyp = d / "text"
            if not hyp.exists():
                problems.append(f"{d}: no hypotheses ({hyp} missing; did stage 5 finish?)")
                continue
            excluded = stage2_excluded(dump_root, testset)
            for sub, ref, fn in _score_jobs(task, testset, d, hyp, data_root, st_lang, text_llm, allow_missing,
                                            excluded):
                for stale in (d / sub / "score.json", d / sub / "error.txt"):
                    stale.unlink(missing_ok=True)
                if ref is None or not Path(ref).exists():
                    warn(f"{d}/{sub}: not scored, no reference {ref or '(no Text+LLM row)'}")
                    continue
                try:
                    fn()
                except (ValueError, FileNotFoundError) as e:
                    problems.append(f"{d}/{sub}: {e}")
                    (d / sub).mkdir(parents=True, exist_ok=True)
                    (d / sub / "error.txt").write_text(f"{e}\n", encoding="utf-8")
    return problems


def stage2_excluded(dump_root: Optional[Path], testset: str) -> Optional[Path]:
    """``<dump_root>/<testset>/excluded.txt`` (stage 2's exclusions) if it exists, else None."""
    path = Path(dump_root) / testset / "excluded.txt" if dump_root is not None else None
    return path if path is not None and path.is_file() else None


def _score_jobs(task, testset, d, hyp, data_root, st_lang, text_llm, allow_missing, excluded=None):
    """(sub dir, reference path or None, scoring thunk) for one decode dir."""
    self_ref = text_llm.path / d.name / "text" if text_llm else None
    ref = data_root / testset / TASKS[task].ref_name if TASKS[task].ref_name else self_ref
    x = dict(excluded=excluded)
    headline = {
        "wer": lambda: scorers.score_wer(ref, hyp, d / "score", allow_missing, **x),
        "bleu": lambda: scorers.score_bleu([dict(ref=ref, hyp=hyp, lang=st_lang(testset), name=d.name, **x)],
                                           d / "score", allow_missing),
        "slu": lambda: scorers.score_slu(ref, hyp, d / "score", task=task, allow_missing=allow_missing, **x),
        "self": lambda: scorers.score_self(ref, hyp, d / "score", allow_missing, **x),
    }
    jobs = [("score", ref, headline[TASKS[task].metric])]
    if task == "asr" and (d / "asr_text").exists():  # Whisper+LLM: the standalone Whisper WER too
        jobs.append(("score_whisper", ref, lambda: scorers.score_wer(
            ref, d / "asr_text", d / "score_whisper", allow_missing, **x)))
    if task == "st" and self_ref is not None:  # BLSP-KD Table 1: ST Self-BLEU
        jobs.append(("score_self", self_ref, lambda: scorers.score_self(
            self_ref, hyp, d / "score_self", allow_missing, **x)))
    return jobs


def exclusion_notes(test_sets: Sequence[str], data_root: Path, dump_root: Optional[Path],
                    out_path: Optional[Path] = None) -> List[str]:
    """One line per test set with exclusions: how many utterances stage 1 (data prep) and
    stage 2 (dumping) left out, why, and a link to each excluded.txt (relative to
    ``out_path``'s dir, the current dir if None)."""
    from espnet_blsp.data.corpora.common import summarize_reasons
    from espnet_blsp.data.kaldi_dir import read_kv

    base = Path(out_path).resolve().parent if out_path else Path.cwd()
    lines = []
    for testset in test_sets:
        text = Path(data_root) / testset / "text"
        for stage, root in (("stage 1 (data prep)", data_root), ("stage 2 (dumping)", dump_root)):
            path = Path(root) / testset / "excluded.txt" if root is not None else None
            if path is None or not path.is_file():
                continue
            excluded = read_kv(path)
            if not excluded:
                continue
            # stage 1's exclusions never reach data/<set>/text, stage 2's are among its lines
            of = f" of {len(read_kv(text))} ({text})" if stage.startswith("stage 2") and text.is_file() else ""
            link = Path(os.path.relpath(path.resolve(), base)).as_posix()
            lines.append(f"{testset}: {stage} excluded {len(excluded)} utterances{of}: "
                         f"{summarize_reasons(excluded)}; list: [{path}]({link})")
    return lines


# ---------------------------------------------------------------------- the table

@dataclass
class Cell:
    text: str
    score: Optional[dict] = None  # the headline score.json, if any


def _load(d: Path, sub: str) -> Optional[dict]:
    """``d/sub/score.json``, ``{"error": ...}`` if scoring failed, or None if not scored."""
    if (d / sub / "error.txt").exists():
        return {"error": (d / sub / "error.txt").read_text(encoding="utf-8").strip()}
    p = d / sub / "score.json"
    return read_score(p) if p.exists() else None


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _cell(task: str, d: Optional[Path], kind: str) -> Cell:
    if d is None:
        return Cell("-")
    r = _load(d, "score_self" if kind == "self" else "score")
    if r is None:
        return Cell("-")
    if "error" in r:
        return Cell("error")
    sc = r["scores"]
    if kind == "self":
        text = _fmt(sc["self_bleu"])
    elif TASKS[task].metric == "self":
        text = f"{_fmt(sc['self_bleu'])} / {_fmt(sc['self_rouge_l'])}"
    else:
        text = _fmt(sc[r["primary"]])
        w = _load(d, "score_whisper") if task == "asr" else None
        if w is not None and "error" not in w:
            text = f"{_fmt(w['scores']['wer'])} / {text}"
    if r.get("num_missing"):
        text += " †"
    return Cell(text, r)


def build_table(systems: Sequence[System], tasks: Optional[Sequence[str]] = None,
                test_sets: Optional[Sequence[str]] = None) -> Tuple[List[str], List[List[str]], List[str]]:
    """(header, rows, notes) of the results table; columns = (task, testset) in TASKS order."""
    present = {k for s in systems for k in s.decodes}
    for t in tasks or ():
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r}; known: {' '.join(TASKS)}")
    order = {t: i for i, t in enumerate(TASKS)}
    set_order = {s: i for i, s in enumerate(test_sets)} if test_sets else None
    keys = [k for k in present if (not tasks or k[0] in tasks) and (set_order is None or k[1] in set_order)]
    keys.sort(key=lambda k: (order[k[0]], set_order[k[1]] if set_order else 0, k[1]))
    cols: List[Tuple[str, str, str]] = []
    for task, testset in keys:
        cols.append((task, testset, "main"))
        if task == "st":
            cols.append((task, testset, "self"))  # dropped below if no system has it
    grid = [[_cell(t, s.decodes.get((t, ts)), kind) for t, ts, kind in cols] for s in systems]
    keep = [i for i in range(len(cols)) if any(row[i].text != "-" for row in grid)]  # drop unscored columns
    cols, grid = [cols[i] for i in keep], [[row[i] for i in keep] for row in grid]
    st_sets = [ts for t, ts, kind in cols if t == "st" and kind == "main"]
    header = ["system"] + [("ST Self-BLEU↑" if kind == "self" else TASKS[t].header) + f" {ts}"
                           for t, ts, kind in cols]
    if len(st_sets) > 1:
        header.append("ST BLEU↑ avg")
    rows, any_missing, any_whisper = [], False, False
    for s, cells in zip(systems, grid):
        any_missing |= any(c.text.endswith("†") for c in cells)
        any_whisper |= any(" / " in c.text for (t, _, _), c in zip(cols, cells) if t == "asr")
        row = [s.name] + [c.text for c in cells]
        if len(st_sets) > 1:
            vals = [c.score["scores"]["bleu"] for (t, _, kind), c in zip(cols, cells)
                    if t == "st" and kind == "main" and c.score is not None]
            row.append(_fmt(sum(vals) / len(vals)) if len(vals) == len(st_sets) else "-")
        rows.append(row)
    notes = []
    if any_whisper:
        notes.append("ASR cells `a / b`: a = the standalone Whisper transcripts, b = the LLM told to "
                     "repeat them (BLSP Table 2).")
    if any_missing:
        notes.append("† some hypotheses were missing and scored as empty (see the decode dir's score/result.txt).")
    if any(TASKS[t].metric == "self" or kind == "self" for t, _, kind in cols):
        notes.append("Self-BLEU / Self-ROUGE-L take the Text+LLM outputs as the reference (BLSP-KD Sec. 5.2).")
    if len(st_sets) > 1:
        notes.append("ST BLEU avg: mean over the ST test sets (directions), as the papers report.")
    return header, rows, notes


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return [line(header), "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"] + \
        [line(r) for r in rows]


# ---------------------------------------------------------------- environment

def environment() -> Dict[str, str]:
    """Date, host, Python, torch, GPU and the espnet_blsp version/commit of this run."""
    import espnet_blsp

    env = {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
           "host": platform.node(), "python": platform.python_version(),
           "espnet_blsp": espnet_blsp.__version__}
    try:
        import torch

        env["torch"] = torch.__version__
        env["gpu"] = (", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
                      if torch.cuda.is_available() else "none")
    except ImportError:
        env["torch"] = "not installed"
    repo = Path(espnet_blsp.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            env["git commit"] = commit.stdout.strip() + (" (with local changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return env


CURVE_MD = Path("curves") / "learning_curve.md"  # under exp/<tag>, by espnet_blsp.bin.learning_curve


def learning_curves(exps: Sequence[Path], out_path: Optional[Path] = None) -> List[str]:
    """A "Learning curves" section for the experiments with ``curves/learning_curve.md``:
    the PNG linked relative to ``out_path``'s dir (the current dir if None), then the table."""
    lines = []
    for e in exps:
        md = Path(e) / CURVE_MD
        if not md.exists():
            continue
        png = md.with_name("learning_curve.png")
        link = Path(os.path.relpath(png.resolve(), Path(out_path).resolve().parent if out_path else Path.cwd()))
        lines += ["", f"### {Path(e).resolve().name}", "", f"![learning curve]({link.as_posix()})", "",
                  *curves.read_table(md), "", f"(from `{md}`)"]
    return ["", "## Learning curves"] + lines if lines else []


ANALYSIS_MDS = (Path("analysis") / "analysis.md", Path("analysis") / "asr_probe" / "asr_probe.md")  # bin/analyze, bin/asr_probe
_IMAGE_RE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def analysis_sections(exps: Sequence[Path], out_path: Optional[Path] = None) -> List[str]:
    """An "Analysis" section for the experiments with ``analysis/analysis.md`` and/or
    ``analysis/asr_probe/asr_probe.md``: their text under a heading per experiment, their
    headings moved three levels down and their figures linked relative to ``out_path``'s dir."""
    base = Path(out_path).resolve().parent if out_path else Path.cwd()
    lines = []
    for e in exps:
        found = [Path(e) / m for m in ANALYSIS_MDS if (Path(e) / m).exists()]
        if found:
            lines += ["", f"### {Path(e).resolve().name}"]
        for md in found:
            body = md.read_text(encoding="utf-8").splitlines()
            has_title = bool(body) and body[0].startswith("# ")
            lines += ["", f"#### {body[0][2:].strip() if has_title else md.stem}", ""]

            def relink(m, md=md):  # a figure next to the .md, linked from RESULTS.md's dir
                return f"![{m.group(1)}]({Path(os.path.relpath((md.parent / m.group(2)).resolve(), base)).as_posix()})"
            for line in body[1:] if has_title else body:
                lines.append(_IMAGE_RE.sub(relink, "###" + line if line.startswith("#") else line))
            lines += ["", f"(from `{md}`)"]
    return ["", "## Analysis"] + lines if lines else []


def render(systems: Sequence[System], title: str, command: str, exps: Sequence[Path] = (),
           tasks: Optional[Sequence[str]] = None, test_sets: Optional[Sequence[str]] = None,
           problems: Sequence[str] = (), env: Optional[Dict[str, str]] = None,
           out_path: Optional[Path] = None, exclusions: Sequence[str] = ()) -> str:
    """The text of RESULTS.md: environment, the table, notes, the excluded utterances
    (``exclusion_notes``), problems, the learning curves
    of ``exps`` (see ``learning_curves``; ``out_path`` is where RESULTS.md goes), then the commands."""
    env = environment() if env is None else env
    header, rows, notes = build_table(systems, tasks, test_sets)
    out = [f"# RESULTS: {title}", "", "## Environment", ""]
    out += [f"- {k}: {v}" for k, v in env.items()]
    out += ["", "## Results", ""]
    out += markdown_table(header, rows) if len(header) > 1 else ["(no scored decodings found)"]
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    if exclusions:
        out += ["", "## Excluded utterances", "",
                "Not decoded and not scored (bad audio, too long or too short, ...), with the reason per "
                "utterance in the linked list:", ""] + [f"- {x}" for x in exclusions]
    if problems:
        out += ["", "## Problems", ""] + [f"- {p}" for p in problems]
    out += learning_curves(exps, out_path)
    out += analysis_sections(exps, out_path)
    out += ["", "## Commands", "", "This file:", "", "```", command, "```"]
    for e in exps:
        cmd_file = Path(e) / "run.sh.cmd"
        if cmd_file.exists():
            lines = cmd_file.read_text(encoding="utf-8").splitlines()[-10:]
            out += ["", f"Recipe runs in `{e}` (last {len(lines)} of `{cmd_file}`):", "", "```"] + lines + ["```"]
    details = []
    for s in systems:
        for (task, testset), d in sorted(s.decodes.items()):
            for sub in ("score", "score_self", "score_whisper"):
                p = d / sub / "score.json"
                if p.exists():
                    r = read_score(p)
                    main = r["scores"].get(r["primary"])
                    cmd = r.get("command", "").replace("|", "\\|")
                    details.append(f"| {s.name} | `{d.name}/{sub}` | {r['metric']} | {_fmt(main)} | "
                                   f"{r['num_utts']} | {r.get('num_missing', 0)} | `{cmd}` |")
    if details:
        out += ["", "<details><summary>Every score and the command that produced it</summary>", "",
                "| system | decode | metric | value | utts | missing | command |",
                "|---|---|---|---:|---:|---:|---|"] + details + ["", "</details>"]
    return "\n".join(out) + "\n"
