"""The web demo (espnet_blsp.bin.demo) in a real browser: headless Chromium driven by selenium.

The demo runs as its own process on a tiny exp dir and a free port. The test uploads a wav,
sends it, waits for the reply in the page and checks it against ``model.respond`` on the same
file; then a text turn (against ``model.chat`` on the conversation so far) and a bad upload
(one clear line, and the conversation goes on). Skipped, with the reason, only where gradio,
selenium or Debian's chromium/chromium-driver are missing (.ci/run installs them).
``BLSP_DEMO_SCREENSHOT=path.png`` saves a screenshot of the page at the end.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_blsp.testing.browser import ask, find_chromium, start_chromium, status

REPO = Path(__file__).resolve().parents[1]
REPEAT = "Please repeat the following words."

pytest.importorskip("gradio", reason="the demo needs gradio: pip install 'espnet_blsp[demo]'")
pytest.importorskip("selenium", reason="the browser test needs selenium: pip install 'espnet_blsp[test]'")
_found, _why = find_chromium()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_found is None, reason=str(_why))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tiny_exp, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "demo.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "espnet_blsp.bin.demo", "--exp_dir", str(tiny_exp),
                                 "--port", str(port), "--device", "cpu", "--max_new_tokens", "8"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        end = time.time() + 240
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the demo exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > end:
                raise AssertionError(f"the demo did not answer on {url}:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = start_chromium(str(tmp_path_factory.mktemp("chromium_profile")))
    yield driver
    driver.quit()


def _clip(path: Path, seconds: float, f0: float) -> str:
    t = np.arange(int(seconds * 16000)) / 16000
    noise = 0.05 * np.random.default_rng(0).standard_normal(len(t))
    x = np.sin(2 * np.pi * f0 * t) * (0.5 + 0.5 * np.sin(5 * t)) + noise
    soundfile.write(str(path), (0.3 * x).astype(np.float32), 16000)
    return str(path)


def test_upload_send_reply(demo_url, browser, tiny_exp, tmp_path):
    from espnet_blsp.api import load

    model = load(tiny_exp, device="cpu")
    wav = _clip(tmp_path / "hello.wav", 1.4, 190)
    browser.get(demo_url)
    reply = ask(browser, wav=wav, timeout=120)
    want = model.respond(wav, REPEAT, max_new_tokens=8)
    assert reply == want
    # a text turn continues the conversation
    follow = ask(browser, message="What did I say?", timeout=120)
    turns = [{"role": "user", "audio": wav, "text": REPEAT}, {"role": "assistant", "text": want},
             {"role": "user", "text": "What did I say?"}]
    assert follow == model.chat(turns, max_new_tokens=8)
    # a file that is not audio: one clear line in the page, nothing added to the conversation
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    with pytest.raises(ValueError, match="Error: the uploaded file notes.wav: cannot decode audio"):
        ask(browser, wav=str(bad), timeout=60)
    assert "Traceback" not in status(browser)
    shot = os.environ.get("BLSP_DEMO_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)
