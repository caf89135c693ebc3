"""Stage 6 scoring: WER, BLEU, SLU accuracy, Self-BLEU / Self-ROUGE-L, and RESULTS.md.

- ``metrics``: pure functions over aligned string lists (the rules are documented there);
- ``tables``: Kaldi-style hyp/ref tables, id matching, ``score.json``/``result.txt`` writing;
- ``scorers``: one function per ``local/score_*.py`` command line;
- ``results``: collect ``score.json`` files of decode dirs into ``RESULTS.md``.
"""
