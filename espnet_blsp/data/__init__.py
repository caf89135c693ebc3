"""Kaldi-style data directories (``kaldi_dir``) and corpus preparation (``corpora``)."""
