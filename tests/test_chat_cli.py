"""The chat CLI (espnet_blsp.bin.chat) on a tiny exp dir: through stdin, a pseudo-terminal and --once.

The replies it prints are checked against ``SpeechChat.chat`` on the same conversation, so
a speech turn, a text turn after it, the instruction change, /reset and the errors (a missing
file, a file that is not audio) all have to do what the help says.
"""

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_blsp.api import load

REPO = Path(__file__).resolve().parents[1]
REPEAT = "Please repeat the following words."
CONTINUE = "Continue the following text."


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _cmd(exp, *extra):
    return [sys.executable, "-m", "espnet_blsp.bin.chat", "--exp_dir", str(exp), "--device", "cpu",
            "--max_new_tokens", "8", *extra]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("chat_wavs")
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate((1.0, 1.6)):
        t = np.arange(int(seconds * 16000)) / 16000
        x = np.sin(2 * np.pi * (150 + 90 * i) * t) * (0.5 + 0.5 * np.sin(6 * t)) + 0.05 * rng.standard_normal(len(t))
        paths.append(str(d / f"clip{i}.wav"))
        soundfile.write(paths[-1], (0.3 * x).astype(np.float32), 16000)
    bad = d / "broken.wav"
    bad.write_text("this is not a wav file")
    return paths, str(bad)


@pytest.fixture(scope="module")
def model(tiny_exp):
    return load(tiny_exp, device="cpu")


def _replies(stdout: str):
    return [line[len("model> "):] for line in stdout.splitlines() if line.startswith("model> ")]


@pytest.mark.slow
def test_session_through_stdin(tiny_exp, clips, model):
    (a, b), bad = clips
    script = "\n".join([
        f"/wav {a}",
        "what did I say",
        "/wav /no/such/file.wav",
        bad,
        "/instruction " + CONTINUE,
        b,  # a path alone is a speech turn
        "/reset",
        f"'{a}'",  # quoted, as a terminal pastes a dropped file
        "/bogus",
        "/quit",
        "never read",
    ]) + "\n"
    proc = subprocess.run(_cmd(tiny_exp), input=script, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = _replies(proc.stdout)
    turns = [{"role": "user", "audio": a, "text": REPEAT}]
    r1 = model.chat(turns, max_new_tokens=8)
    turns += [{"role": "assistant", "text": r1}, {"role": "user", "text": "what did I say"}]
    r2 = model.chat(turns, max_new_tokens=8)
    turns += [{"role": "assistant", "text": r2}, {"role": "user", "audio": b, "text": CONTINUE}]
    r3 = model.chat(turns, max_new_tokens=8)
    r4 = model.chat([{"role": "user", "audio": a, "text": CONTINUE}], max_new_tokens=8)  # after /reset
    assert got == [r1, r2, r3, r4]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3, proc.stderr
    assert errors[0] == "error: /no/such/file.wav: no such file"
    assert errors[1].startswith(f"error: {bad}: cannot decode audio {bad}")
    assert errors[2].startswith("error: unknown command /bogus")
    assert "Traceback" not in proc.stderr
    assert "(conversation cleared)" in proc.stdout and f"(instruction: {CONTINUE!r})" in proc.stdout


@pytest.mark.slow
def test_once(tiny_exp, clips, model):
    (a, _), bad = clips
    proc = subprocess.run(_cmd(tiny_exp, "--once", "--wav", a, "--instruction", REPEAT),
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == model.respond(a, REPEAT, max_new_tokens=8) + "\n"  # the reply alone, for scripts
    proc = subprocess.run(_cmd(tiny_exp, "--once", "--wav", bad), capture_output=True, text=True, env=_env(),
                          timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: cannot decode audio")
    proc = subprocess.run(_cmd(tiny_exp.parent / "nope", "--once", "--text", "hi"), capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert proc.returncode == 1 and "no such directory; expected an experiment dir" in proc.stderr
    assert "Traceback" not in proc.stderr


def _read_until(fd, marker: bytes, timeout: float) -> bytes:
    out = b""
    end = time.time() + timeout
    while marker not in out:
        left = end - time.time()
        if left <= 0:
            raise AssertionError(f"no {marker!r} within {timeout} s; got {out[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    return out


@pytest.mark.slow
def test_session_in_a_pseudo_terminal(tiny_exp, clips, model):
    (a, _), _ = clips
    master, slave = os.openpty()
    proc = subprocess.Popen(_cmd(tiny_exp), stdin=slave, stdout=slave, stderr=slave, env=_env(), close_fds=True)
    os.close(slave)
    try:
        banner = _read_until(master, b"you> ", 300).decode()
        assert "espnet_blsp chat:" in banner and "/wav PATH" in banner
        os.write(master, f"/wav {a}\n".encode())
        out = _read_until(master, b"you> ", 120).decode().replace("\r\n", "\n")
        want = model.respond(a, REPEAT, max_new_tokens=8)
        assert f"model> {want}\n" in out
        os.write(master, b"/quit\n")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
