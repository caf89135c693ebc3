"""Drive the web demo (bin/demo) in headless Chromium: for its browser test and the README screenshot.

Usage::

    driver = start_chromium(tmp_dir)               # Debian's chromium + chromedriver, headless
    driver.get("http://127.0.0.1:7860")
    reply = ask(driver, wav="clip.wav")            # upload, Send, wait for the reply, read it
    reply2 = ask(driver, message="What did I say?")
    driver.save_screenshot("docs/web_demo.png")

or, against a running demo: ``python -m espnet_blsp.testing.browser --url http://127.0.0.1:7860
--wav clip.wav --screenshot docs/web_demo.png`` (prints the replies).

Only the system browser is used (``/usr/bin/chromium``, ``/usr/bin/chromedriver``; nothing is
downloaded): ``apt-get install -y chromium chromium-driver``. The selectors are the demo's
``elem_id``s (audio, instruction, message, send, chatbot, status).
"""

import argparse
import os
import re
import shutil
import tempfile
import time
from typing import Optional

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
REPLY_DONE = re.compile(r"reply (\d+) in [0-9.]+ s")


def find_chromium():
    """(chromium, chromedriver) paths, or None with the reason."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return None, "no chromium/chromedriver on PATH (apt-get install -y chromium chromium-driver)"
    return (chromium, driver), None


def start_chromium(user_data_dir: str, width: int = 1200, height: int = 1250):
    """A headless Chromium under selenium with a fresh profile in ``user_data_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found, why = find_chromium()
    if found is None:
        raise RuntimeError(why)
    chromium, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def _text(driver, selector: str) -> str:
    from selenium.webdriver.common.by import By

    els = driver.find_elements(By.CSS_SELECTOR, selector)
    return els[0].get_attribute("textContent").strip() if els else ""


def bot_messages(driver):
    """The text of each assistant message in the conversation, in order."""
    from selenium.webdriver.common.by import By

    return [e.get_attribute("textContent") for e in
            driver.find_elements(By.CSS_SELECTOR, "#chatbot [data-testid='bot'] .message-content")]


def status(driver) -> str:
    return _text(driver, "#status")


def upload(driver, wav: str, timeout: float = 30) -> None:
    """Put a file into the demo's audio input and wait until the page holds it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    field = WebDriverWait(driver, timeout).until(
        lambda d: (d.find_elements(By.CSS_SELECTOR, "#audio input[type=file]") or [None])[0])
    field.send_keys(os.path.abspath(wav))
    WebDriverWait(driver, timeout).until(
        lambda d: not d.find_elements(By.CSS_SELECTOR, "#audio input[type=file]")
        or d.find_elements(By.CSS_SELECTOR, "#audio audio, #audio [data-testid='waveform-Speech']"))


def ask(driver, wav: Optional[str] = None, message: Optional[str] = None, instruction: Optional[str] = None,
        timeout: float = 120) -> str:
    """One turn through the page: optional clip, instruction and message, then Send; returns the
    reply's text once the status line reports it (or raises with the status line's error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#send"))  # the page is up
    before = status(driver)
    m = REPLY_DONE.search(before)
    n = int(m.group(1)) if m else 0
    if wav is not None:
        upload(driver, wav)
    if instruction is not None:
        box = driver.find_element(By.CSS_SELECTOR, "#instruction input")
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(instruction, Keys.ENTER)
    if message is not None:
        box = driver.find_element(By.CSS_SELECTOR, "#message textarea")
        box.clear()
        box.send_keys(message)
    driver.find_element(By.CSS_SELECTOR, "#send").click()
    end = time.time() + timeout
    while time.time() < end:
        s = status(driver)
        done = REPLY_DONE.search(s)
        if done and int(done.group(1)) > n:
            return bot_messages(driver)[-1]
        if s.startswith("Error:") and s != before:
            raise ValueError(s)
        time.sleep(0.2)
    raise TimeoutError(f"no reply within {timeout} s; status {status(driver)!r}")


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--wav", action="append", default=[], help="a clip for a speech turn (repeatable)")
    p.add_argument("--message", action="append", default=[], help="a text turn after the clips (repeatable)")
    p.add_argument("--instruction", default=None)
    p.add_argument("--screenshot", default=None, help="save a PNG of the page at the end")
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args(cmd)
    with tempfile.TemporaryDirectory() as profile:
        driver = start_chromium(profile)
        try:
            driver.get(args.url)
            time.sleep(2)
            for wav in args.wav:
                print(f"[speech: {wav}] -> {ask(driver, wav=wav, instruction=args.instruction, timeout=args.timeout)}")
            for text in args.message:
                print(f"{text} -> {ask(driver, message=text, timeout=args.timeout)}")
            if args.screenshot:
                driver.save_screenshot(args.screenshot)
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
