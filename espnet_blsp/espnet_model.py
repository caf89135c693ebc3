"""BLSPModel: speech encoder -> modality adapter -> LLM, trained with CE and/or KD losses.

One class serves both papers:

* BLSP: ``speech_adapter: cnn`` with ``ce_weight: 1.0`` (response cross-entropy on the
  LLM's own continuations, optionally mixed with repetition data);
* BLSP-KD: ``speech_adapter: cformer`` with response KL, input KL and the CIF quantity
  loss, and optionally Partial LoRA in the LLM (variants 1 to 7 of Table 1 are configs).

Batch (built by :class:`espnet_blsp.collate.BLSPCollateFn`)::

    speech            (B, T, F)  log-mel frames (F = n_mels) or pre-computed encoder
                                 outputs (F = D_enc) when ``precomputed_encoder``
    speech_lengths    (B,)
    text              (B, N)     transcript token ids (the CIF target, teacher input)
    prefix            (B, P)     template prefix + instruction token ids
    suffix            (B, S)     template suffix token ids
    response          (B, R)     response token ids (continuation or transcript); optional
    *_lengths         (B,)       true lengths; padding value is -1 for ids

Legend: B batch, T frames, N transcript tokens, P/S/R prefix/suffix/response tokens,
H LLM width, V vocabulary.

With no response term (ce_weight = kl_resp_weight = 0, or no ``response``; variant 4)
``prefix`` and ``suffix`` go unused: student and teacher see only the template's turn
opening (``PromptTemplate.start_ids``) + the middle, as the input KL needs no prompt
(BLSP-KD Sec. 4.2; the official code drops the instruction and the suffix the same way).
"""

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from espnet_blsp.losses import cif_quantity_loss, embedding_ctc, kl_div, kl_div_and_agreement, kl_div_and_correct, response_ce


def _split(padded: torch.Tensor, lengths: torch.Tensor) -> List[torch.Tensor]:
    """(B, L, ...) padded + (B,) lengths -> list of B tensors (L_b, ...)."""
    return [padded[b, : int(n)] for b, n in enumerate(lengths.tolist())]


def _name(utt_id: Optional[Sequence[str]], b: int) -> str:
    return utt_id[b] if utt_id is not None else f"#{b}"


class BLSPModel(AbsESPnetModel):
    """BLSP / BLSP-KD model.

    Args:
        encoder: :class:`~espnet_blsp.encoders.whisper.WhisperSpeechEncoder`.
        adapter: a CNN or CFormer adapter, ``forward(x, x_lens, target_lens)``.
        llm: :class:`~espnet_blsp.llm.causal_lm.SpeechLLM` (frozen, optional Partial LoRA).
        ce_weight: weight of the response cross-entropy (BLSP).
        kl_resp_weight: weight of the response KL (BLSP-KD, Eq. 3).
        kl_input_weight: weight of the input KL (BLSP-KD, Eq. 4; needs CFormer).
        cif_weight: weight of the CIF quantity loss (BLSP-KD, Eq. 5; needs CFormer).
        ctc_weight: weight of a CTC loss of the adapter outputs against the transcript in the
            LLM's input embedding space (:func:`~espnet_blsp.losses.embedding_ctc`; not in the
            papers: a warm start for small data, used by the CPU mini configs).
        temperature: KD temperature (2 in BLSP-KD).
        loss_chunk_size: rows of logits computed at once inside the losses.
        precomputed_encoder: ``speech`` already holds (frozen) encoder outputs.
        max_context: longest LLM input allowed; defaults to the LLM's
            ``max_position_embeddings``.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        adapter: torch.nn.Module,
        llm: torch.nn.Module,
        ce_weight: float = 1.0,
        kl_resp_weight: float = 0.0,
        kl_input_weight: float = 0.0,
        cif_weight: float = 0.0,
        ctc_weight: float = 0.0,
        temperature: float = 2.0,
        loss_chunk_size: int = 256,
        precomputed_encoder: bool = False,
        max_context: Optional[int] = None,
        extract_feats_in_collect_stats: bool = False,
    ):
        super().__init__()
        if ce_weight + kl_resp_weight + kl_input_weight + cif_weight + ctc_weight <= 0:
            raise ValueError("at least one loss weight must be positive")
        if precomputed_encoder and any(p.requires_grad for p in encoder.parameters()):
            raise ValueError(
                "precomputed_encoder (run.sh --dump_encoder_output true) bypasses the speech "
                "encoder, which this config trains (speech_encoder_conf.freeze: false): the "
                "encoder would never be updated; dump log-mel features instead"
            )
        self.encoder = encoder
        self.adapter = adapter
        self.llm = llm
        self.ce_weight = ce_weight
        self.kl_resp_weight = kl_resp_weight
        self.kl_input_weight = kl_input_weight
        self.cif_weight = cif_weight
        self.ctc_weight = ctc_weight
        # the blank of the embedding CTC: a trainable vector in the LLM's embedding space
        self.ctc_blank = (
            torch.nn.Parameter(0.02 * torch.randn(llm.hidden_size)) if ctc_weight > 0 else None
        )
        self.temperature = temperature
        self.loss_chunk_size = loss_chunk_size
        self.precomputed_encoder = precomputed_encoder
        self.max_context = max_context or getattr(
            llm.model.config, "max_position_embeddings", None
        )
        self.extract_feats_in_collect_stats = extract_feats_in_collect_stats

    # ------------------------------------------------------------------ encoding
    def encode(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        utt_id: Optional[Sequence[str]] = None,
        target_lens: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """Speech -> adapter outputs in the LLM embedding space.

        Returns ``(y (B, N', H), y_lens (B,), aux)``.
        """
        if self.precomputed_encoder:
            enc, enc_lens = speech, speech_lengths  # (B, T', D_enc)
        else:
            max_frames = self.encoder.max_frames
            too_long = (speech_lengths > max_frames).nonzero().flatten().tolist()
            if too_long:
                names = ", ".join(_name(utt_id, b) for b in too_long)
                raise ValueError(
                    f"utterance(s) {names} exceed 30 s ({max_frames} frames); "
                    "Whisper cannot encode them. Segment them or filter them in stage 2."
                )
            enc_dtype = next(self.encoder.parameters()).dtype
            with torch.set_grad_enabled(
                torch.is_grad_enabled() and any(
                    p.requires_grad for p in self.encoder.parameters()
                )
            ):
                enc, enc_lens = self.encoder(speech.to(enc_dtype), speech_lengths)
        adapter_dtype = next(self.adapter.parameters()).dtype
        y, y_lens, aux = self.adapter(enc.to(adapter_dtype), enc_lens, target_lens)
        if target_lens is None:  # inference: CIF may legitimately fire 0 tokens
            return y, y_lens, aux
        empty = (y_lens <= 0).nonzero().flatten().tolist()
        if empty:
            names = ", ".join(_name(utt_id, b) for b in empty)
            raise ValueError(
                f"utterance(s) {names} are shorter than one adapter output frame; "
                "filter such clips in stage 2"
            )
        return y, y_lens, aux

    # ------------------------------------------------------------------ training
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        prefix: torch.Tensor,
        prefix_lengths: torch.Tensor,
        suffix: torch.Tensor,
        suffix_lengths: torch.Tensor,
        response: Optional[torch.Tensor] = None,
        response_lengths: Optional[torch.Tensor] = None,
        utt_id: Optional[Sequence[str]] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Compute the weighted training loss.

        Returns ``(loss, stats, weight)`` where ``weight`` is the batch size and
        ``stats`` holds detached scalars: ``loss``, and each active term of
        ``loss_ce``, ``loss_kl_resp``, ``loss_kl_input``, ``loss_cif``, plus ``acc``.
        """
        batch_size = speech.shape[0]
        empty_text = (text_lengths <= 0).nonzero().flatten().tolist()
        if empty_text:
            names = ", ".join(_name(utt_id, b) for b in empty_text)
            raise ValueError(f"utterance(s) {names} have an empty transcript")

        # 1. speech -> adapter outputs; CFormer fires exactly N tokens in training
        y, y_lens, aux = self.encode(speech, speech_lengths, utt_id, text_lengths)

        stats: Dict[str, torch.Tensor] = {}
        loss = y.new_zeros((), dtype=torch.float32)
        # Steps 2-4 read the LLM's outputs. Without their terms (CIF and/or CTC alone: adapter
        # pretraining) the LLM does not run; the step costs the adapter and one vocabulary product.
        if self.runs_llm:
            # 2. student prompt: prefix + speech + suffix + response + EOS when a response term
            # is active; else (input KL and/or CIF only, variant 4) no prompt: the template's
            # turn opening + speech, since the input KL needs none (BLSP-KD Sec. 4.2)
            texts = _split(text, text_lengths)
            if self.uses_prompt(response is not None):
                prefixes = _split(prefix, prefix_lengths)
                suffixes = _split(suffix, suffix_lengths)
                responses = _split(response, response_lengths)
            else:
                start = prefix.new_tensor(self.llm.template.start_ids())  # (P,)
                prefixes, suffixes, responses = [start] * batch_size, [start[:0]] * batch_size, None
            llm_dtype = self.llm.dtype
            student = self.llm.build_inputs(
                prefixes, [m.to(llm_dtype) for m in _split(y, y_lens)], suffixes, responses
            )
            self._check_context(student.lengths, utt_id)
            h_s = self.llm.hidden_states(student)  # (B, T_s, H)
            weight = self.llm.lm_head_weight  # (V, H)

            resp_s = student.targets != -100  # (B, T_s): positions predicting y_1..EOS
            n_resp = int(resp_s.sum())

            # 3. response cross-entropy (also the accuracy statistic, which the response KL
            # gives instead when there is no CE term)
            need_resp_kl = self.kl_resp_weight > 0 and n_resp > 0
            acc_from_kl = need_resp_kl and self.ce_weight <= 0
            if n_resp > 0 and not acc_from_kl:
                with torch.set_grad_enabled(torch.is_grad_enabled() and self.ce_weight > 0):
                    ce, n_correct = response_ce(
                        h_s[resp_s], weight, student.targets[resp_s], self.loss_chunk_size
                    )
                stats["acc"] = (n_correct.float() / n_resp).detach()
                if self.ce_weight > 0:
                    loss = loss + self.ce_weight * ce
                    stats["loss_ce"] = ce.detach()

            # 4. KD: the teacher is the same frozen LLM on the transcript, LoRA off
            if need_resp_kl or self.kl_input_weight > 0:
                with torch.no_grad():
                    teacher = self.llm.build_inputs(
                        prefixes, texts, suffixes, responses, middle_is_speech=False
                    )
                    h_t = self.llm.hidden_states(teacher)  # (B, T_t, H)
                if need_resp_kl:
                    resp_t = teacher.targets != -100
                    if acc_from_kl:
                        kl, n_correct = kl_div_and_correct(
                            h_s[resp_s], h_t[resp_t], weight, student.targets[resp_s],
                            self.temperature, self.loss_chunk_size,
                        )
                        stats["acc"] = (n_correct.float() / n_resp).detach()
                    else:
                        kl = kl_div(
                            h_s[resp_s], h_t[resp_t], weight, self.temperature,
                            self.loss_chunk_size,
                        )
                    loss = loss + self.kl_resp_weight * kl
                    stats["loss_kl_resp"] = kl.detach()
                if self.kl_input_weight > 0:
                    if not torch.equal(y_lens, text_lengths):
                        raise ValueError(
                            "input KL needs one adapter output per transcript token "
                            "(the cformer adapter); got lengths "
                            f"{y_lens.tolist()} vs {text_lengths.tolist()}"
                        )
                    kl_in, n_agree = kl_div_and_agreement(
                        h_s[student.input_mask], h_t[teacher.input_mask], weight,
                        self.temperature, self.loss_chunk_size,
                    )
                    loss = loss + self.kl_input_weight * kl_in
                    stats["loss_kl_input"] = kl_in.detach()
                    # share of speech positions whose top-1 next token is the teacher's
                    n_in = max(int(student.input_mask.sum()), 1)
                    stats["acc_input"] = (n_agree.float() / n_in).detach()

        # 5. CIF quantity loss |sum(alpha) - N| / N
        if self.cif_weight > 0:
            if "alpha_sum" not in aux:
                raise ValueError("cif_weight > 0 needs the cformer adapter")
            l_cif = cif_quantity_loss(aux["alpha_sum"], text_lengths)
            loss = loss + self.cif_weight * l_cif
            stats["loss_cif"] = l_cif.detach()

        # 6. CTC of the adapter outputs in the LLM's input embedding space (ours, optional)
        if self.ctc_weight > 0:
            l_ctc = embedding_ctc(
                y, y_lens, self.llm.model.get_input_embeddings().weight, self.ctc_blank,
                text, text_lengths,
            )
            loss = loss + self.ctc_weight * l_ctc
            stats["loss_ctc"] = l_ctc.detach()

        stats["loss"] = loss.detach()
        return force_gatherable((loss, stats, batch_size), loss.device)

    @property
    def runs_llm(self) -> bool:
        """Whether a loss reads the LLM's outputs (CE, response KL or input KL)."""
        return self.ce_weight > 0 or self.kl_resp_weight > 0 or self.kl_input_weight > 0

    def uses_prompt(self, has_response: bool) -> bool:
        """Whether training sequences carry the instruction, suffix and response: only when
        a response loss (CE or response KL) is active and the batch has responses."""
        return has_response and (self.ce_weight > 0 or self.kl_resp_weight > 0)

    def _check_context(self, lengths: torch.Tensor, utt_id) -> None:
        if self.max_context is None:
            return
        over = (lengths > self.max_context).nonzero().flatten().tolist()
        if over:
            names = ", ".join(
                f"{_name(utt_id, b)} ({int(lengths[b])} positions)" for b in over
            )
            raise ValueError(
                f"prompt overflows the LLM context of {self.max_context}: {names}"
            )

    def collect_feats(self, speech, speech_lengths, **kwargs) -> Dict[str, torch.Tensor]:
        return {"feats": speech, "feats_lengths": speech_lengths}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        prefixes: List[torch.Tensor],
        suffixes: List[torch.Tensor],
        utt_id: Optional[Sequence[str]] = None,
        **decode_conf,
    ) -> List[List[int]]:
        """Batched decoding: speech + per-utterance instruction -> response token ids."""
        y, y_lens, _ = self.encode(speech, speech_lengths, utt_id)
        middle = [m.to(self.llm.dtype) for m in _split(y, y_lens)]
        return self.llm.generate(prefixes, middle, suffixes, **decode_conf)

    # ------------------------------------------------- checkpoints: trainable only
    def trainable_keys(self) -> List[str]:
        """Names of the entries a checkpoint holds (trainable params + adapter buffers)."""
        keys = [n for n, p in self.named_parameters() if p.requires_grad]
        keys += [f"adapter.{n}" for n, _ in self.adapter.named_buffers()]
        return keys

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        """Only the trainable weights: megabytes, not the frozen 7B LLM."""
        full = super().state_dict(prefix=prefix, keep_vars=keep_vars)
        keep = {prefix + k for k in self.trainable_keys()}
        out = type(full)((k, v) for k, v in full.items() if k in keep)
        if destination is not None:
            destination.update(out)
            return destination
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a trainable-only checkpoint; frozen weights come from their own paths."""
        missing, unexpected = super().load_state_dict(state_dict, strict=False)
        if strict:
            required = set(self.trainable_keys())
            lost = sorted(required.intersection(missing))
            if lost or unexpected:
                raise RuntimeError(
                    f"checkpoint mismatch: missing trainable {lost[:10]}, "
                    f"unexpected {list(unexpected)[:10]}"
                )
        return torch.nn.modules.module._IncompatibleKeys(
            [k for k in missing if k in set(self.trainable_keys())], unexpected
        )

    def to(self, *args, **kwargs):
        """Move to a device; a dtype applies to the trainable adapter only.

        ESPnet's trainer casts the model to ``--train_dtype``; the frozen LLM and
        encoder keep the dtype they were loaded in (bf16 on GPU).
        """
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        super().to(device=device, non_blocking=non_blocking)
        if dtype is not None:
            self.adapter.to(dtype=dtype)
        return self

    def log_trainable(self) -> None:
        n = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        logging.info(
            f"trainable parameters: {n:,} of {total:,} "
            f"({100.0 * n / max(total, 1):.2f}%)"
        )
        for name, p in self.named_parameters():
            if p.requires_grad:
                logging.info(f"  trainable: {name} {tuple(p.shape)}")
