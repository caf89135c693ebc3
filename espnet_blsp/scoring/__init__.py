"""Scoring: WER, BLEU, SLU accuracy, Self-BLEU / Self-ROUGE-L."""
