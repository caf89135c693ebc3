"""Hypothesis/reference tables for scoring: read, match by utterance id, write scores.

A table is a Kaldi-style file, one line per utterance: ``<utt_id> <text...>`` (the text
may be empty). Files are read as UTF-8; a bad line raises an error naming the file and
the line (see ``espnet_blsp.data.kaldi_dir.read_kv``).

Every scorer writes, under its ``out_dir``:

- ``score.json``: ``{"metric", "primary", "scores": {name: value}, "num_utts",
  "num_missing", "ref", "hyp", "command", "cwd", "date", ...}`` (machine readable);
- ``result.txt``: the summary line, then per-utterance details (human readable).
"""

import datetime
import json
import logging
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_blsp.data.kaldi_dir import read_kv

_SHOW_IDS = 10  # how many offending ids an error message lists


@dataclass
class Matched:
    """Reference and hypothesis texts aligned by utterance id (sorted ids).

    ``missing`` holds the reference ids that had no hypothesis; they are scored as
    empty hypotheses (only possible with ``allow_missing``). ``excluded`` holds the
    reference ids left out of scoring because stage 2 excluded them (bad audio, too long
    or too short; listed with the reason in ``dump/<set>/excluded.txt``).
    """

    keys: List[str]
    refs: List[str]
    hyps: List[str]
    missing: List[str]
    excluded: List[str] = field(default_factory=list)


def read_table(path) -> Dict[str, str]:
    """``<utt_id> <text>`` lines -> {utt_id: text}; errors name the file and line."""
    return read_kv(Path(path))


def match(ref: Dict[str, str], hyp: Dict[str, str], allow_missing: bool = False,
          ref_name: str = "reference", hyp_name: str = "hypothesis",
          excluded: Optional[Dict[str, str]] = None, excluded_name: str = "excluded.txt") -> Matched:
    """Align two tables by utterance id.

    Hypothesis ids absent from the reference are always an error. Reference ids that
    stage 2 excluded (``excluded``: utt -> reason, read from ``excluded_name``) and that
    have no hypothesis are dropped from scoring, with a log line. Other reference ids
    absent from the hypotheses are an error unless ``allow_missing`` (then they count as
    empty hypotheses and are listed in ``Matched.missing``).
    """
    extra = sorted(set(hyp) - set(ref))
    if extra:
        raise ValueError(
            f"{hyp_name}: {len(extra)} utterance ids are not in {ref_name}, "
            f"e.g. {' '.join(extra[:_SHOW_IDS])}")
    dropped = sorted((set(ref) & set(excluded or {})) - set(hyp))
    if dropped:
        logging.info(f"{hyp_name}: {len(dropped)} of {len(ref)} utterances of {ref_name} not scored, "
                     f"excluded in stage 2 (reasons in {excluded_name}): {' '.join(dropped[:_SHOW_IDS])}"
                     + (" ..." if len(dropped) > _SHOW_IDS else ""))
        gone = set(dropped)
        ref = {k: v for k, v in ref.items() if k not in gone}
    missing = sorted(set(ref) - set(hyp))
    if missing and not allow_missing:
        checked = f"excluded in stage 2 ({excluded_name})" if excluded is not None else "excluded in stage 2"
        raise ValueError(
            f"{hyp_name}: {len(missing)} of {len(ref)} utterance ids of {ref_name} were neither decoded "
            f"nor {checked}: {' '.join(missing[:_SHOW_IDS])}" + (" ..." if len(missing) > _SHOW_IDS else "")
            + " (re-run stage 5, which resumes, or pass --allow_missing to score them as empty)")
    if not ref:
        raise ValueError(f"{ref_name} holds no utterances" + (" that stage 2 kept" if dropped else ""))
    keys = sorted(ref)
    return Matched(keys, [ref[k] for k in keys], [hyp.get(k, "") for k in keys], missing, dropped)


def read_and_match(ref_path, hyp_path, allow_missing: bool = False, excluded_path=None) -> Matched:
    """``match`` over two files, with the file names in any error; ``excluded_path`` is
    stage 2's ``dump/<set>/excluded.txt`` (``<utt> <reason>``), if any."""
    excluded = read_table(excluded_path) if excluded_path is not None else None
    return match(read_table(ref_path), read_table(hyp_path), allow_missing,
                 ref_name=str(ref_path), hyp_name=str(hyp_path), excluded=excluded,
                 excluded_name=str(excluded_path))


def cli_command(argv: Optional[Sequence[str]] = None) -> str:
    """The command line of the running script, quoted so it can be pasted back."""
    argv = list(sys.argv if argv is None else argv)
    return "python " + shlex.join(argv)


def format_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.2f}"
    if v is None:
        return "n/a"
    return str(v)


def write_score(out_dir, metric: str, primary: str, scores: Dict[str, object], num_utts: int,
                missing: Sequence[str], ref, hyp, command: str, details: Sequence[str] = (),
                excluded: Sequence[str] = (), **extra) -> dict:
    """Write ``out_dir/score.json`` and ``out_dir/result.txt``; print and return the summary.

    ``scores`` holds the numbers (``scores[primary]`` is the headline value); ``details``
    are extra lines for result.txt (per-utterance alignments, predictions, ...);
    ``missing`` lists the reference ids that were scored as empty hypotheses, ``excluded``
    those left out because stage 2 excluded them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "metric": metric,
        "primary": primary,
        "scores": scores,
        "num_utts": num_utts,
        "num_missing": len(missing),
        "num_excluded": len(excluded),
        "ref": str(ref),
        "hyp": str(hyp),
        "command": command,
        "cwd": os.getcwd(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    result.update(extra)
    summary = (f"{metric}: " + " ".join(f"{k}={format_value(v)}" for k, v in scores.items())
               + f" utts={num_utts}")
    if missing:
        summary += f" missing={len(missing)} (scored as empty)"
    if excluded:
        summary += f" excluded={len(excluded)} (in stage 2, not scored)"
    tmp = out_dir / "score.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "score.json")
    lines = [summary, f"ref: {ref}", f"hyp: {hyp}", f"command: {command}"]
    if missing:
        lines.append("missing hypotheses (scored as empty): " + " ".join(missing))
    if excluded:
        lines.append("excluded in stage 2 (not scored): " + " ".join(excluded))
    (out_dir / "result.txt").write_text("\n".join(lines + [""] + list(details)) + "\n", encoding="utf-8")
    print(f"{hyp}: {summary}")
    return result


def read_score(path) -> dict:
    """Load a ``score.json`` written by ``write_score`` (errors name the file)."""
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable score.json ({e})") from None
    for key in ("metric", "primary", "scores", "num_utts"):
        if key not in result:
            raise ValueError(f"{path}: score.json lacks {key!r}")
    return result
