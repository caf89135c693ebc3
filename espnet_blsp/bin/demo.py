#!/usr/bin/env python3
"""A local web page to talk to a trained model (Gradio): record or upload speech, type text, multi-turn.

Usage:
    pip install "espnet_blsp[demo]"     # or: make web-demo EXP=egs2/blsp/exp/train_blsp
    python -m espnet_blsp.bin.demo --exp_dir exp/train_blsp --port 7860
    # then open http://127.0.0.1:7860

The page: a clip (microphone or upload), an instruction (picked from the papers' task
instructions or typed), a message box and the conversation. Send with a clip makes a speech
turn: the instruction (or the message, when one is typed) + the clip; Send without a clip
makes a text turn from the message. Replies stream in; Clear starts a new conversation.

The model is loaded once (``espnet_blsp.load``, as ``bin/chat`` and the API do); requests are
queued and served one at a time, and the page stays live while one runs (it shows the queue).
A clip that is not audio, too long or too short gets one line saying so, and the
conversation goes on.
"""

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from espnet_blsp.api import DEFAULT_INSTRUCTION, SAMPLE_RATE, load_audio
from espnet_blsp.utils.audio import AudioError

WORKING = "generating ..."
DONE = "reply {n} in {seconds:.1f} s"  # n: replies so far in this conversation (the browser test waits for it)


def instruction_choices() -> List[str]:
    """The papers' instructions (BLSP Table 11; ST into German), the repetition one first."""
    from espnet_blsp.llm.prompt import INSTRUCTIONS

    out = [DEFAULT_INSTRUCTION]
    for text in INSTRUCTIONS.values():
        text = text.format(target="German")
        if text not in out:
            out.append(text)
    return out


def make_turn(audio_path: Optional[str], instruction: str, message: str):
    """(turn for ``SpeechChat.chat``, what the conversation shows) from the page's inputs.
    Raises AudioError for a bad clip and ValueError when there is nothing to send."""
    message = (message or "").strip()
    if audio_path:
        name = Path(audio_path).name
        wav = load_audio(audio_path, name=f"the uploaded file {name}")  # decoded once, here
        text = message or (instruction or "").strip()
        shown = f"[speech: {name}, {len(wav) / SAMPLE_RATE:.1f} s] {text}".rstrip()
        return {"role": "user", "audio": (wav, SAMPLE_RATE), "text": text}, shown
    if message:
        return {"role": "user", "text": message}, message
    raise ValueError("record or upload a clip, or type a message")


def build_demo(model, decode_opts: Optional[Dict] = None, title: Optional[str] = None):
    """The Gradio Blocks of the page for a loaded ``SpeechChat``."""
    import gradio as gr

    opts = dict(decode_opts or {})

    def submit(audio_path, instruction, message, turns, history):
        turns, history = list(turns or []), list(history or [])
        try:
            turn, shown = make_turn(audio_path, instruction, message)
        except (AudioError, ValueError) as e:
            yield history, turns, f"**Error:** {e}", gr.update(), gr.update()
            return
        history += [{"role": "user", "content": shown}, {"role": "assistant", "content": ""}]
        start, reply = time.time(), ""
        try:
            for piece in model.chat(turns + [turn], stream=True, **opts):
                reply += piece
                history[-1] = {"role": "assistant", "content": reply}
                yield history, turns, WORKING, gr.update(), gr.update()
        except (AudioError, ValueError) as e:  # e.g. a conversation over the LLM's context
            yield history[:-2], turns, f"**Error:** {e}", gr.update(), gr.update()
            return
        history[-1] = {"role": "assistant", "content": reply}
        turns += [turn, {"role": "assistant", "text": reply}]
        n = sum(t["role"] == "assistant" for t in turns)
        yield history, turns, DONE.format(n=n, seconds=time.time() - start), None, ""

    def clear():
        return [], [], "new conversation", None, ""

    with gr.Blocks(title=title or "espnet_blsp") as demo:
        gr.Markdown(f"## espnet_blsp: talk to the model\n`{model.describe()}`\n\n"
                    "Send with a clip: the instruction (or your message, if you type one) + the clip. "
                    "Send without a clip: your message as a text turn.")
        chatbot = gr.Chatbot(label="Conversation", elem_id="chatbot", render_markdown=False, height=520)
        with gr.Row():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Speech", elem_id="audio")
            with gr.Column():
                instruction = gr.Dropdown(choices=instruction_choices(), value=DEFAULT_INSTRUCTION,
                                          allow_custom_value=True, label="Instruction for the clip",
                                          elem_id="instruction")
                message = gr.Textbox(label="Message", placeholder="a text turn, or the instruction for the clip",
                                     lines=2, elem_id="message")
        with gr.Row():
            send = gr.Button("Send", variant="primary", elem_id="send")
            reset = gr.Button("Clear", elem_id="clear")
        status = gr.Markdown("", elem_id="status")
        turns = gr.State([])
        inputs = [audio, instruction, message, turns, chatbot]
        outputs = [chatbot, turns, status, audio, message]
        send.click(submit, inputs, outputs)
        message.submit(submit, inputs, outputs)
        reset.click(clear, None, [chatbot, turns, status, audio, message])
    # one request at a time: one model, one CPU/GPU; the others wait in the queue
    demo.queue(default_concurrency_limit=1, max_size=32)
    return demo


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, help="exp/<tag> after stage 4, or a bin/export directory")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines too")
    p.add_argument("--checkpoint", default=None, help="a file name inside exp_dir (default: stage 5's choice)")
    p.add_argument("--speech_encoder", default=None, help="Whisper dir instead of the recorded one")
    p.add_argument("--llm", default=None, help="LLM dir instead of the recorded one")
    p.add_argument("--device", default="auto")
    p.add_argument("--max_new_tokens", type=int, default=128)
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local demo: no calls home
    try:
        import gradio  # noqa: F401
    except ImportError:
        sys.exit('demo: gradio is not installed: pip install "espnet_blsp[demo]" (or pip install gradio)')
    from espnet_blsp.api import load

    try:
        model = load(args.exp_dir, device=args.device, checkpoint=args.checkpoint,
                     speech_encoder=args.speech_encoder, llm=args.llm)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"demo: {e}")
    demo = build_demo(model, dict(max_new_tokens=args.max_new_tokens), title=f"espnet_blsp: {Path(args.exp_dir).name}")
    logging.info(f"serving {model.describe()} on http://{args.host}:{args.port}")
    demo.launch(server_name=args.host, server_port=args.port, share=False)


if __name__ == "__main__":
    main()
