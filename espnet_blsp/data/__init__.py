"""Kaldi-style data directories and corpus preparation."""
