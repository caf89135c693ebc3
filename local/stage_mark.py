#!/usr/bin/env python3
"""Record and check what a stage's .done mark was made from (run.sh, stages 1-3).

Usage:
    python local/stage_mark.py check dump/test/.done encoder_output=true speech_encoder=assets/w --files data/test
    python local/stage_mark.py write dump/test/.done encoder_output=true speech_encoder=assets/w --files data/test

``check`` exits 0, silent, when the mark records exactly these options and inputs; else it
prints one line saying what changed (``speech_encoder was 'a', now 'b'; data/test changed``)
and exits 1. ``write`` records them. ``--files`` (a file or a directory's files, by content;
a wav.scp's audio by size and mtime) and ``--tree`` (every non-audio file below a corpus
root, by size and mtime) are repeatable; see espnet_blsp/utils/stage_marks.py.
"""

import argparse
import sys

from espnet_blsp.utils.stage_marks import changes, describe, read_mark, write_mark


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["check", "write"])
    p.add_argument("mark", help="the .done file")
    p.add_argument("options", nargs="*", help="key=value pairs the stage ran with")
    p.add_argument("--files", action="append", default=[], help="an input file or dir (repeatable)")
    p.add_argument("--tree", action="append", default=[], help="a corpus root read by the stage (repeatable)")
    args = p.parse_intermixed_args(argv)  # key=value pairs may follow --files/--tree
    try:
        mark = describe(args.options, args.files, args.tree)
    except ValueError as e:
        sys.exit(f"{p.prog}: error: {e}")
    if args.action == "write":
        write_mark(args.mark, mark)
        return
    why = changes(read_mark(args.mark), mark)
    if why:
        print("; ".join(why))
        sys.exit(1)


if __name__ == "__main__":
    main()
