"""Analyses of a trained model (BLSP Sec. 2 and Appendix A/D, BLSP-KD Sec. 5.3).

- :mod:`~espnet_blsp.analysis.representations`: the LLM's hidden states at the last prompt
  position for speech and for the paired transcript (the BLSP Table 6 instructions);
- :mod:`~espnet_blsp.analysis.similarity`: the mean cosine similarities of BLSP Tables 7/8/12/13;
- :mod:`~espnet_blsp.analysis.figures`: the t-SNE plot (Figures 1 and 3) and the layer-wise plot;
- :mod:`~espnet_blsp.analysis.probe`: the CTC ASR probe on the LLM's hidden states (BLSP-KD Table 4).

Command lines: ``python -m espnet_blsp.bin.analyze`` and ``python -m espnet_blsp.bin.asr_probe``.
"""
