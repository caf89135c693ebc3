"""Preprocessor of the BLSP task: text fields -> LLM token ids.

The tokenizer is loaded lazily on first use, so that the preprocessor pickles cheaply
into DataLoader workers and importing the task downloads nothing.

Input (one utterance, as ESPnet's loaders give it)::

    speech       (T, F) float    log-mel frames or encoder outputs (passed through)
    text         str             transcript (prompt-normalised)
    response_ids (R,) int        the response as token ids (optional; ``text_int``): stage 3
                                 writes the teacher's generated ids, used as they are
    response     str             continuation / transcript (optional; tokenised here when
                                 there is no ``response_ids``)
    instruction  str             instruction (optional; ``default_instruction`` else)

Output::

    speech (T, F), text (N,), prefix (P,), suffix (S,), response (R,)   int64 ids
"""

from typing import Dict, Optional

import numpy as np


class BLSPPreprocessor:
    """Tokenise transcript, instruction and response with the LLM's template.

    Args:
        llm_path: directory (or hub id) of the LLM whose tokenizer is used.
        prompt_template: ``blsp`` or ``chat`` (see :class:`PromptTemplate`).
        default_instruction: used when the utterance has no ``instruction``.
        response_from_text: the transcript is every utterance's response (ASR pretraining,
            BLSP Sec. 2 and Appendix A: the adapter learns to make the LLM output the transcript;
            with ``default_instruction`` the repeat instruction); ``response``/``response_ids``
            are then not read.
    """

    def __init__(
        self,
        llm_path: str,
        prompt_template: str = "blsp",
        default_instruction: str = (
            "Continue the following text in a coherent and engaging style "
            "with less than 40 words."
        ),
        response_from_text: bool = False,
    ):
        self.llm_path = llm_path
        self.response_from_text = response_from_text
        self.prompt_template = prompt_template
        self.default_instruction = default_instruction
        self._template = None

    @property
    def template(self):
        if self._template is None:
            from transformers import AutoTokenizer

            from espnet_blsp.llm.prompt import PromptTemplate

            # as SpeechLLM loads it: a local dir (or the local HF cache), never a download
            tokenizer = AutoTokenizer.from_pretrained(self.llm_path, local_files_only=True)
            self._template = PromptTemplate(tokenizer, kind=self.prompt_template)
        return self._template

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_template"] = None
        return state

    def __call__(self, uid: str, data: Dict) -> Dict[str, np.ndarray]:
        t = self.template
        out: Dict[str, np.ndarray] = {}
        if "speech" in data:
            out["speech"] = data["speech"]
        if "text" in data:
            text = str(data["text"]).strip()
            if not text:
                raise ValueError(f"utterance {uid}: empty transcript")
            out["text"] = np.asarray(t.text_ids(text), dtype=np.int64)
        instruction = str(data.get("instruction", "") or "").strip()
        out["prefix"] = np.asarray(
            t.prefix_ids(instruction or self.default_instruction), dtype=np.int64
        )
        out["suffix"] = np.asarray(t.suffix_ids(), dtype=np.int64)
        if self.response_from_text:  # ASR pretraining: the response is the transcript
            if "text" not in out:
                raise ValueError(f"utterance {uid}: response_from_text needs the transcript (text)")
            out["response"] = out["text"].copy()
        # the ids the teacher generated, not a re-tokenisation of their text, which need not
        # give them back (byte-level BPE: "The" vs " The")
        elif "response_ids" in data:
            ids = np.asarray(data["response_ids"], dtype=np.int64).reshape(-1)
            if ids.size == 0 or ids.min() < 0:
                raise ValueError(f"utterance {uid}: response_ids must be non-empty token ids")
            out["response"] = ids
        elif "response" in data:
            out["response"] = np.asarray(
                t.text_ids(str(data["response"]).strip()), dtype=np.int64
            )
        return out


def build_preprocessor(llm_conf: Dict, default_instruction: Optional[str] = None, response_from_text: bool = False):
    kwargs = {"response_from_text": response_from_text}
    if default_instruction:
        kwargs["default_instruction"] = default_instruction
    return BLSPPreprocessor(
        llm_conf["model_name_or_path"],
        prompt_template=llm_conf.get("prompt_template", "blsp"),
        **kwargs,
    )
