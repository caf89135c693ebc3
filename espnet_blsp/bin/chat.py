#!/usr/bin/env python3
"""Chat with a trained model in the terminal: text turns and speech turns, replies streamed.

Usage:
    python -m espnet_blsp.bin.chat --exp_dir exp/train_blsp
    python -m espnet_blsp.bin.chat --exp_dir exp/train_blsp --once --wav clip.wav \
        --instruction "Please repeat the following words."

In the session (one line per turn):
    any text            a text turn
    /wav PATH           a speech turn: the current instruction + the clip (a PATH alone, an
                        existing file, does the same)
    /instruction TEXT   the instruction put before each later clip (alone: show it)
    /system TEXT        a system text at the start of the conversation (chat template:
                        the system message; blsp template: a line before the first turn)
    /reset              forget the conversation (the instruction and system text stay)
    /help, /quit        (or end of input, Ctrl-D)

A missing or undecodable file, or a turn the model cannot take, prints one ``error:`` line
and the session goes on. ``--once`` answers one speech turn (``--wav``) or text turn
(``--text``), prints the reply and exits (status 1 with the error on stderr if it fails).
"""

import argparse
import contextlib
import logging
import os
import shlex
import sys
from typing import Dict, List, Optional, TextIO

from espnet_blsp.utils.audio import AudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".sph", ".m4a")
HELP = ("text: a text turn | /wav PATH (or a PATH alone): a speech turn | /instruction TEXT | "
        "/system TEXT | /reset | /quit")


class ChatSession:
    """The conversation of one REPL; ``handle(line)`` takes one input line and writes to ``out``."""

    def __init__(self, model, instruction: str, system: Optional[str], out: TextIO, err: TextIO,
                 decode_opts: Optional[Dict] = None):
        self.model, self.instruction, self.system = model, instruction, system
        self.out, self.err = out, err
        self.decode_opts = decode_opts or {}
        self.prompt = "model> "  # before each reply; "" for --once, whose stdout is the reply alone
        self.turns: List[Dict] = []

    def _conversation(self, turn: Dict) -> List[Dict]:
        head = [{"role": "system", "text": self.system}] if self.system else []
        return head + self.turns + [turn]

    def reply(self, turn: Dict) -> Optional[str]:
        """Stream the model's reply to ``turn`` to ``out``; keep both turns on success."""
        pieces: List[str] = []
        try:
            stream = iter(self.model.chat(self._conversation(turn), stream=True, **self.decode_opts))
            first = next(stream, "")  # loads the audio and builds the prompt: errors come here
            self.out.write(self.prompt + first)
            self.out.flush()
            pieces.append(first)
            for piece in stream:
                pieces.append(piece)
                self.out.write(piece)
                self.out.flush()
        except (AudioError, ValueError) as e:
            if pieces:
                self.out.write("\n")
            self.error(str(e))
            return None
        except KeyboardInterrupt:
            self.out.write("\n(interrupted; the turn is dropped)\n")
            return None
        self.out.write("\n")
        self.out.flush()
        text = "".join(pieces)
        self.turns += [turn, {"role": "assistant", "text": text}]
        return text

    def error(self, message: str) -> None:
        self.err.write("error: " + " ".join(message.split()) + "\n")
        self.err.flush()

    def speech_turn(self, path: str) -> Optional[str]:
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            self.error(f"{path}: no such file")
            return None
        return self.reply({"role": "user", "audio": path, "text": self.instruction})

    def handle(self, line: str) -> bool:
        """One input line; False when the session should end."""
        line = line.strip()
        if not line:
            return True
        cmd, _, rest = line.partition(" ")
        rest = rest.strip()
        if cmd in ("/quit", "/exit"):
            return False
        if cmd == "/help":
            self.out.write(HELP + "\n")
        elif cmd == "/reset":
            self.turns = []
            self.out.write("(conversation cleared)\n")
        elif cmd == "/instruction":
            if rest:
                self.instruction = rest
            self.out.write(f"(instruction: {self.instruction!r})\n")
        elif cmd == "/system":
            self.system = rest or None
            self.out.write(f"(system: {self.system!r})\n")
        elif cmd == "/wav":
            if not rest:
                self.error("/wav needs a path")
            else:
                self.speech_turn(_unquote(rest))
        else:
            path = _unquote(line)
            if os.path.isfile(path):
                self.speech_turn(path)
            elif path.lower().endswith(AUDIO_SUFFIXES) and " " not in path:
                self.error(f"{path}: no such file")
            elif cmd.startswith("/"):
                self.error(f"unknown command {cmd}; {HELP}")
            else:
                self.reply({"role": "user", "text": line})
        self.out.flush()
        return True


def _unquote(text: str) -> str:
    """A path typed with quotes or shell escapes (as a terminal's drag and drop pastes it)."""
    try:
        parts = shlex.split(text)
    except ValueError:
        return text
    return parts[0] if len(parts) == 1 else text


def get_parser() -> argparse.ArgumentParser:
    from espnet_blsp.api import DEFAULT_INSTRUCTION

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, help="exp/<tag> after stage 4, or a bin/export directory")
    p.add_argument("--checkpoint", default=None, help="a file name inside exp_dir (default: stage 5's choice)")
    p.add_argument("--speech_encoder", default=None, help="Whisper dir instead of the recorded one")
    p.add_argument("--llm", default=None, help="LLM dir instead of the recorded one")
    p.add_argument("--device", default="auto")
    p.add_argument("--instruction", default=DEFAULT_INSTRUCTION, help="the instruction before each clip")
    p.add_argument("--system", default=None, help="a system text")
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--once", action="store_true", help="answer one turn (--wav or --text) and exit")
    p.add_argument("--wav", default=None, help="with --once: the clip")
    p.add_argument("--text", default=None, help="with --once: a text turn instead of a clip")
    p.add_argument("--verbose", action="store_true", help="log the loading steps")
    return p


def main(cmd=None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    if args.once and (args.wav is None) == (args.text is None):
        sys.exit("chat: --once needs exactly one of --wav and --text")
    if args.once and args.wav is not None and not os.path.isfile(args.wav):
        sys.exit(f"chat: error: {args.wav}: no such file")
    from espnet_blsp.api import load

    try:
        with contextlib.redirect_stdout(sys.stderr):  # espnet2 prints notices at import; stdout is the chat
            model = load(args.exp_dir, device=args.device, checkpoint=args.checkpoint,
                         speech_encoder=args.speech_encoder, llm=args.llm)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"chat: {e}")
    session = ChatSession(model, args.instruction, args.system, sys.stdout, sys.stderr,
                          dict(max_new_tokens=args.max_new_tokens))
    if args.once:
        session.prompt = ""
        turn = ({"role": "user", "audio": args.wav, "text": args.instruction} if args.wav is not None
                else {"role": "user", "text": args.text})
        return 0 if session.reply(turn) is not None else 1
    interactive = sys.stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
        print(f"espnet_blsp chat: {model.describe()}\n{HELP}\n(instruction: {args.instruction!r})")
    while True:
        try:
            line = input("you> ") if interactive else sys.stdin.readline()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if not interactive and line == "":
            return 0
        if not session.handle(line):
            return 0


if __name__ == "__main__":
    sys.exit(main())
