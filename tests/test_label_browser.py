"""The labelling workbench's web page in a real browser: headless Chromium driven by Selenium against a
server started here (`selfplay.label.web.make_server`), in each mode (compare, correct, arena).

Votes are cast by clicking the page's buttons; the records file must then hold exactly those records, in
order, with the labeller's name as typed. A model's answer holding a script is shown as text and never
runs, and a replayed form (a stale tab, or the browser's back button) is refused with nothing recorded.

The models are fakes (anything with `generate`): the page, the queue and the records are what is tested.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

pytest.importorskip("selenium", reason="browser test: selenium is not installed (pip install selenium)")
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "browser test: Debian's chromium and chromium-driver are not installed "
        "(make setup installs them when run as root)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

import envs  # noqa: E402
from envs.reward import sample_tasks  # noqa: E402
from selfplay.io.labels import COMPARISON, CORRECTION, VOTE  # noqa: E402
from selfplay.label.queue import Queue  # noqa: E402
from selfplay.label.web import make_server  # noqa: E402
from selfplay.label.workbench import Item, Sampling, Workbench  # noqa: E402

SCRIPT = "<script>window.__pwned=1</script>"
LABELLER = "Zoë Ng"  # a space and a non-ASCII letter: the name cookie must carry both


class FakeModel:
    """Answers `answer(prompt, seed)`; what the workbench calls of a policy or a thinking sampler."""

    def __init__(self, answer: Callable[[str, int], str]) -> None:
        self.answer = answer

    def generate(self, prompts, *, max_new_tokens, temperature, top_k, stop, seed) -> list[str]:
        return [self.answer(p, seed) for p in prompts]


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    d = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    d.implicitly_wait(0)  # `click` waits for each page; a missing element fails at once
    d.set_page_load_timeout(20)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def env():
    return envs.make("arithmetic", digits=1)


@pytest.fixture(scope="module")
def items(env) -> list[Item]:
    """Three distinct tasks (the four drawn hold one twice)."""
    unique = {t.id: Item(t.id, env.prompt_for(t), t) for t in sample_tasks(env, 4, seed=0)}
    assert len(unique) >= 3
    return list(unique.values())[:3]


@contextlib.contextmanager
def served(driver, bench: Workbench) -> Iterator[str]:
    """The workbench served on a free port; its address, with the browser's cookies cleared for it."""
    server = make_server(bench, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        driver.get(base)
        driver.delete_all_cookies()  # a cookie for 127.0.0.1 holds for every port: an earlier mode's name
        yield base
    finally:
        with contextlib.suppress(Exception):
            driver.delete_all_cookies()
        server.shutdown()
        server.server_close()
        thread.join(5)


def text(driver, id_: str) -> str:
    return driver.find_element(By.ID, id_).text


def message(driver) -> str:
    return text(driver, "message")


def click(driver, id_: str) -> None:
    """Click a button that posts a form (or a link), and wait for the page it leads to."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, id_).click()

    def gone(_) -> bool:  # stale, or (a page kept for the back button) "does not belong to the document"
        try:
            old.is_enabled()
        except WebDriverException:
            return True
        return False

    WebDriverWait(driver, 10).until(gone)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script("return document.readyState") == "complete")


def refused(driver) -> str:
    """The refusal the page shows, or "" when it shows none."""
    found = driver.find_elements(By.CSS_SELECTOR, "#message.error")
    return found[0].text if found else ""


def start(driver, base: str, name: str = LABELLER) -> None:
    """Open the page and give the labeller's name."""
    driver.get(base)
    field = driver.find_element(By.ID, "labeller")
    field.send_keys(name)
    click(driver, "start")
    assert not refused(driver), f"the name form was refused: {refused(driver)}"
    assert name in driver.find_element(By.TAG_NAME, "body").text


def token(driver) -> str:
    return driver.find_element(By.NAME, "token").get_attribute("value")


def shows_script_as_text(driver) -> None:
    assert driver.execute_script("return window.__pwned") is None
    assert not driver.find_elements(By.TAG_NAME, "script")


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_compare(driver, env, items, tmp_path):
    names = {"alpha": FakeModel(lambda p, seed: str(seed % 1000)), "beta": FakeModel(lambda p, seed: SCRIPT)}
    queue = Queue(tmp_path / "compare", "compare")
    bench = Workbench("compare", queue, names, items=items, n=3, env=env)
    by_prompt = {it.prompt: it for it in items}
    shown, tokens = [], []
    with served(driver, bench) as base:
        start(driver, base)
        for k, choice in enumerate(["0", "tie", "all_bad"]):
            prompt = text(driver, "prompt")
            assert prompt == items[k].prompt  # the queue hands out items in order
            options = [text(driver, f"option-{i}") for i in range(3)]
            assert not driver.find_elements(By.ID, "option-3")
            assert options.count(SCRIPT) == 1, options  # beta's answer, once, as the very text it wrote
            shows_script_as_text(driver)
            shown.append((prompt, options))
            tokens.append(token(driver))
            if k == 0:  # a stale tab on the same item: its form is refused once this one is sent
                first = driver.current_window_handle
                driver.switch_to.new_window("tab")
                driver.get(base)
                assert token(driver) == tokens[0]
                stale = driver.current_window_handle
                driver.switch_to.window(first)
            click(driver, f"pick-{choice}")
            assert not refused(driver), refused(driver)
            if k == 0:
                assert len(lines(queue.records)) == 1
                driver.switch_to.window(stale)
                click(driver, "pick-1")
                assert "already submitted" in message(driver)
                assert len(lines(queue.records)) == 1
                driver.close()
                driver.switch_to.window(first)
        assert message(driver) == "Nothing left to label."
        assert "3 labelled, 3 items done" in driver.find_element(By.TAG_NAME, "body").text

    records = lines(queue.records)
    assert [r["pick"] for r in records] == [0, "tie", "all_bad"]
    assert [r["token"] for r in records] == tokens
    for r, (prompt, options) in zip(records, shown, strict=True):
        item = by_prompt[prompt]
        assert r["format"] == COMPARISON
        assert (r["id"], r["prompt"], r["labeller"]) == (item.id, prompt, LABELLER)
        assert [c["text"] for c in r["completions"]] == options  # in the order shown
        assert sorted(c["model"] for c in r["completions"]) == ["alpha", "alpha", "beta"]
        assert all((c["model"] == "beta") == (c["text"] == SCRIPT) for c in r["completions"])
        assert r["source"] == {"env": env.name, "options": env.options, "task": item.id}
        assert r["sampling"] == asdict(Sampling())


def test_correct(driver, env, items, tmp_path):
    def judge(item, answer):
        score = env.score(item.task, answer)
        return {"by": "env", "score": score} if score < 1 else None

    queue = Queue(tmp_path / "correct", "correct")
    bench = Workbench(
        "correct", queue, {"gamma": FakeModel(lambda p, seed: "x")}, items=items, env=env, wrong=judge
    )
    with served(driver, bench) as base:
        start(driver, base)
        # item 1: the suggestion (the environment's expert) accepted
        assert text(driver, "prompt") == items[0].prompt
        assert text(driver, "answer") == "x"
        assert "the environment scores it 0" in driver.find_element(By.TAG_NAME, "body").text
        assert text(driver, "suggestion") == env.expert(items[0].task)
        click(driver, "accept")
        assert not refused(driver), refused(driver)
        # item 2: an empty correction is refused and costs nothing; then "7" is written
        assert text(driver, "prompt") == items[1].prompt
        second = token(driver)
        click(driver, "write")
        assert "the correction is empty" in message(driver)
        click(driver, "back")
        assert token(driver) == second  # the same form again
        driver.find_element(By.ID, "text").send_keys("7")
        click(driver, "write")
        assert not refused(driver), refused(driver)
        # item 3: skipped (the answer is right after all), and a stale tab's skip is a replay
        assert text(driver, "prompt") == items[2].prompt
        first = driver.current_window_handle
        driver.switch_to.new_window("tab")
        driver.get(base)
        stale = driver.current_window_handle
        driver.switch_to.window(first)
        click(driver, "skip")
        assert message(driver) == "Nothing left to label."
        driver.switch_to.window(stale)
        click(driver, "skip")
        assert "already submitted" in message(driver)
        driver.close()
        driver.switch_to.window(first)

    records = lines(queue.records)
    assert [r["completion"] for r in records] == [env.expert(items[0].task), "7"]
    assert [r["suggested"] for r in records] == [True, False]
    assert [r["id"] for r in records] == [items[0].id, items[1].id]
    for r, item in zip(records, items, strict=False):
        assert r["format"] == CORRECTION
        assert (r["prompt"], r["labeller"], r["model"]) == (item.prompt, LABELLER, "gamma")
        assert r["rejected"] == "x"
        assert r["judge"] == {"by": "env", "score": 0.0}
        assert r["source"] == {"env": env.name, "options": env.options, "task": item.id}
    assert queue.progress(LABELLER) == (2, 3)  # the skip is done but makes no record
    events = lines(queue.log)
    assert [e["item"] for e in events if e["event"] == "skip"] == [items[2].id]


def test_arena(driver, tmp_path):
    names = {"alpha": FakeModel(lambda p, seed: "4"), "beta": FakeModel(lambda p, seed: SCRIPT)}
    queue = Queue(tmp_path / "arena", "arena")
    bench = Workbench("arena", queue, names)
    shown = []
    with served(driver, bench) as base:
        start(driver, base)
        for prompt, choice in [("2+2=", "a"), ("what is 3+4?", "tie")]:
            driver.find_element(By.ID, "prompt-box").send_keys(prompt)
            click(driver, "ask")
            assert not refused(driver), refused(driver)
            assert text(driver, "prompt") == prompt
            options = [text(driver, "option-0"), text(driver, "option-1")]
            assert sorted(options) == sorted(["4", SCRIPT])
            shows_script_as_text(driver)
            body = driver.find_element(By.TAG_NAME, "body").text
            assert "alpha" not in body and "beta" not in body  # anonymous until the vote
            shown.append((prompt, options))
            click(driver, f"pick-{choice}")
            assert not refused(driver), refused(driver)
            reveal = text(driver, "reveal")
            assert f"You voted {choice}" in reveal and "alpha" in reveal and "beta" in reveal
            if choice == "a":  # back to the vote page and vote again: a replayed post
                count = len(lines(queue.records))
                driver.back()
                WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.ID, "pick-b")))
                assert text(driver, "prompt") == prompt
                click(driver, "pick-b")
                assert "already submitted" in message(driver)
                assert len(lines(queue.records)) == count
                driver.get(base)
            assert driver.find_elements(By.ID, "prompt-box")

    records = lines(queue.records)
    assert [r["winner"] for r in records] == ["a", "tie"]
    for r, (prompt, options) in zip(records, shown, strict=True):
        assert r["format"] == VOTE
        assert (r["prompt"], r["labeller"]) == (prompt, LABELLER)
        assert [r["a"]["text"], r["b"]["text"]] == options
        assert {r["a"]["model"], r["b"]["model"]} == {"alpha", "beta"}
        assert r["a"]["text"] == ("4" if r["a"]["model"] == "alpha" else SCRIPT)
        assert r["source"] == {"typed": True}
    assert (queue.dir / "ratings.md").is_file()  # the league table is rewritten after every vote
