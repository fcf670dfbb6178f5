"""A screenshot of the labelling workbench's compare page (`python -m selfplay.label compare`), for the docs.

    python bench/label_screenshot.py docs/label_compare.png

It serves a compare-mode workbench on two-digit arithmetic with two stand-in models (one answers right,
the other is off by 10 or by 1; three answers an item), gives a labeller's name in headless Chromium and
saves the first item's page, 1000x800 pixels, as a PNG. Needs Debian's chromium and chromium-driver and the
selenium package.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import envs
from envs.reward import sample_tasks
from selfplay.label.queue import Queue
from selfplay.label.web import make_server
from selfplay.label.workbench import Item, Workbench


class Answers:
    """A stand-in model: the expert's answer to each prompt, shifted by the next of `offsets` (cycling
    per prompt, so that a model asked twice answers two different texts)."""

    def __init__(self, right: dict[str, str], offsets: tuple[int, ...]) -> None:
        self.right, self.offsets, self.calls = right, offsets, {}

    def generate(self, prompts, *, max_new_tokens, temperature, top_k, stop, seed) -> list[str]:
        out = []
        for p in prompts:
            k = self.calls[p] = self.calls.get(p, -1) + 1
            out.append(str(int(self.right[p]) + self.offsets[k % len(self.offsets)]))
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the PNG to write, e.g. docs/label_compare.png")
    p.add_argument("--labeller", default="ann")
    args = p.parse_args(argv)
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        print("error: needs Debian's chromium and chromium-driver", file=sys.stderr)
        return 1

    env = envs.make("arithmetic", digits=2)
    tasks = {t.id: t for t in sample_tasks(env, 8, seed=0)}.values()
    items = [Item(t.id, env.prompt_for(t), t) for t in tasks]
    right = {it.prompt: env.expert(it.task) for it in items}
    models = {"rl": Answers(right, (0,)), "imitation": Answers(right, (10, -1))}
    with tempfile.TemporaryDirectory() as tmp:
        bench = Workbench("compare", Queue(tmp, "compare"), models, items=items, n=3, env=env)
        server = make_server(bench, host="127.0.0.1", port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        options = webdriver.ChromeOptions()
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        options.binary_location = chromium
        driver = webdriver.Chrome(options=options, service=Service(chromedriver))
        try:  # the page's viewport itself, not the window around it
            metrics = {"width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": False}
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
            driver.find_element(By.ID, "labeller").send_keys(args.labeller)
            driver.find_element(By.ID, "start").click()
            WebDriverWait(driver, 10).until(
                EC.any_of(
                    EC.presence_of_element_located((By.ID, "option-2")),
                    EC.presence_of_element_located((By.ID, "message")),
                )
            )
            if driver.find_elements(By.ID, "message"):
                print(f"error: the page says {driver.find_element(By.ID, 'message').text!r}", file=sys.stderr)
                return 1
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(args.out))
        finally:
            driver.quit()
            server.shutdown()
            server.server_close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
