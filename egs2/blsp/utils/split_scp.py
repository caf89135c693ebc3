#!/usr/bin/env python3
"""Split a Kaldi-style scp/text file into N contiguous parts of balanced size.

Usage:
    utils/split_scp.py data/test/wav.scp split4/wav.1.scp split4/wav.2.scp split4/wav.3.scp split4/wav.4.scp
    utils/split_scp.py --utt2spk data/test/utt2spk data/test/text split2/text.1 split2/text.2

Lines keep their order; part k gets the k-th contiguous block. Without --utt2spk the
part sizes differ by at most one line. With --utt2spk no speaker is split across parts:
speakers are kept whole and the cut points are put where the running line count is
closest to k/N of the total (each speaker's lines must then be contiguous, as in a
sorted Kaldi dir). More parts than lines (or speakers) is an error.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence


def split_points(sizes: Sequence[int], n: int) -> List[int]:
    """Cut a sequence of group sizes into n contiguous non-empty parts of near-equal total.

    Returns n + 1 group indices ``[0, c1, ..., len(sizes)]``. Cut k goes at the group
    boundary whose prefix sum is nearest to ``k * total / n``, kept strictly increasing
    and leaving at least one group for each later part.
    """
    g = len(sizes)
    if n < 1:
        raise ValueError(f"number of parts must be >= 1, got {n}")
    if n > g:
        raise ValueError(f"cannot split {g} groups into {n} non-empty parts")
    prefix = [0]
    for s in sizes:
        prefix.append(prefix[-1] + s)
    total = prefix[-1]
    cuts = [0]
    for k in range(1, n):
        lo, hi = cuts[-1] + 1, g - (n - k)  # allowed boundary indices
        target = k * total / n
        best = min(range(lo, hi + 1), key=lambda i: (abs(prefix[i] - target), i))
        cuts.append(best)
    cuts.append(g)
    return cuts


def read_lines(path: Path) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [line for line in f if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e})") from None


def split_file(lines: Sequence[str], n: int, utt2spk: Optional[Dict[str, str]] = None,
               name: str = "input") -> List[List[str]]:
    """The n parts of ``lines`` (each ``<utt_id> ...``)."""
    if not lines:
        raise ValueError(f"{name} is empty")
    if utt2spk is None:
        groups = [[line] for line in lines]
    else:
        groups, seen = [], set()
        last = None
        for line in lines:
            utt = line.split(maxsplit=1)[0]
            if utt not in utt2spk:
                raise ValueError(f"{name}: utterance {utt} is not in utt2spk")
            spk = utt2spk[utt]
            if spk != last:
                if spk in seen:
                    raise ValueError(f"{name}: the lines of speaker {spk} are not contiguous (at {utt}); "
                                     "sort the file by speaker first")
                seen.add(spk)
                groups.append([])
                last = spk
            groups[-1].append(line)
    if n > len(groups):
        what = "speakers" if utt2spk is not None else "lines"
        raise ValueError(f"{name}: cannot split {len(groups)} {what} into {n} parts")
    cuts = split_points([len(grp) for grp in groups], n)
    return [[line for grp in groups[a:b] for line in grp] for a, b in zip(cuts[:-1], cuts[1:])]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utt2spk", type=Path, default=None, help="keep each speaker's lines in one part")
    p.add_argument("input", type=Path)
    p.add_argument("outputs", type=Path, nargs="+")
    args = p.parse_args(argv)
    try:
        utt2spk = None
        if args.utt2spk is not None:
            utt2spk = {}
            for line in read_lines(args.utt2spk):
                parts = line.split()
                if len(parts) != 2:
                    raise ValueError(f"{args.utt2spk}: bad line {line.rstrip()!r} (expected <utt> <spk>)")
                utt2spk[parts[0]] = parts[1]
        parts = split_file(read_lines(args.input), len(args.outputs), utt2spk, str(args.input))
    except (ValueError, OSError) as e:
        sys.stderr.write(f"split_scp.py: {e}\n")
        return 1
    for out, lines in zip(args.outputs, parts):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
