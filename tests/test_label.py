"""The labelling workbench: its files, its queue, the terminal and the web page (without a browser; the
browser drives it in test_label_browser.py), a killed server, and the stages that read its records."""

from __future__ import annotations

import html
import http.cookiejar
import json
import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch.nn.functional as F

import agents
import envs
import selfplay.arena.ratings as ratings
from envs.reward import sample_tasks
from selfplay.config import ConfigError, load_config
from selfplay.label import FormError, LabelFileError, Queue, load_corrections, load_votes
from selfplay.label.cli import main as label_main
from selfplay.label.web import make_server
from selfplay.label.workbench import Item, Workbench
from selfplay.text.episodes import forward_completions
from selfplay.text.verifier import main as verifier_main
from selfplay.text.verifier.data import VerifierDataError, load_comparisons

ROOT = Path(__file__).resolve().parents[1]
ENV_ARGS = ["--env", "arithmetic", "--env-options", '{"digits": 1}']


class Fake:
    """A model that answers every prompt with one text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def generate(self, prompts, **knobs):
        return [self.text for _ in prompts]


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> list[str]:
    """Two small random policies for arithmetic."""
    out = []
    for seed in (0, 1):
        tok = agents.CharTokenizer()
        cfg = agents.ModelConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=32)
        path = tmp_path_factory.mktemp("ckpt") / f"model{seed}"
        policy = agents.new_policy(cfg, tokenizer=tok, device="cpu", seed=seed, meta={"game": "arithmetic"})
        agents.save(policy, path)
        out.append(str(path))
    return out


def label(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "selfplay.label", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


# --- the files ----------------------------------------------------------------------------------------
def test_comparison_records_become_pairs_and_older_files_still_load(tmp_path):
    shown = [{"text": t, "model": m} for t, m in (("5", "rl"), ("6", "imitation"), ("7", "rl"))]
    base = {"format": "selfplay.comparison/2", "prompt": "2+3=", "completions": shown}
    rows = [
        {**base, "pick": 0},  # three-way: 5 over 6 and over 7
        {**base, "completions": shown[:2], "pick": 1},  # 6 over 5
        {**base, "pick": "tie"},
        {**base, "pick": "all_bad"},
        {"prompt": "1+1=", "chosen": "2", "rejected": "3"},  # version 1, no format
    ]
    path = tmp_path / "comparisons.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = [(c.prompt, c.chosen, c.rejected) for c in load_comparisons(path)]
    assert pairs == [("2+3=", "5", "6"), ("2+3=", "5", "7"), ("2+3=", "6", "5"), ("1+1=", "2", "3")]
    same = [{"text": "5", "model": "a"}, {"text": "5", "model": "b"}]  # one text twice: no pair with itself
    path.write_text(json.dumps({**base, "completions": same, "pick": 0}) + "\n")
    with pytest.raises(VerifierDataError, match="holds no comparisons"):
        load_comparisons(path)
    for bad, says in [
        ({**base, "pick": 3}, "'pick' must be 0..2"),
        ({**base, "format": "selfplay.comparison/9", "pick": 0}, "format 'selfplay.comparison/9'"),
        ({**base, "completions": shown[:1], "pick": 0}, "list of 2 or 3"),
        ({"prompt": "1+1=", "chosen": "2"}, "missing key 'rejected'"),
    ]:
        path.write_text(json.dumps(rows[0]) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(VerifierDataError, match=rf"comparisons.jsonl:2: .*{re.escape(says)}"):
            load_comparisons(path)


def test_corrections_load_from_records_and_plain_lines(tmp_path):
    path = tmp_path / "corrections.jsonl"
    record = {"format": "selfplay.correction/1", "prompt": "2+3=", "completion": "5", "rejected": "6"}
    record["source"] = {"env": "arithmetic", "options": {}, "task": "t1"}
    path.write_text(
        json.dumps(record) + "\n" + json.dumps({"prompt": "Capital of France?", "completion": "Paris"})
    )
    got = [(c.prompt, c.completion, c.task) for c in load_corrections(path)]
    assert got == [("2+3=", "5", "t1"), ("Capital of France?", "Paris", None)]
    path.write_text(json.dumps({"prompt": "2+3="}) + "\n")
    with pytest.raises(LabelFileError, match=r"corrections.jsonl:1: missing key 'completion'"):
        load_corrections(path)


def test_votes_rate_models_through_selfplay_ratings(tmp_path):
    def vote(a, b, winner):
        side = lambda m: {"text": "x", "model": m}  # noqa: E731
        return {"format": "selfplay.vote/1", "prompt": "p", "a": side(a), "b": side(b), "winner": winner}

    votes = [vote("big", "small", "a")] * 8 + [vote("small", "big", "tie"), vote("mid", "small", "a")] * 4
    votes += [vote("big", "mid", "a")] * 6 + [vote("mid", "big", "both_bad")]
    path = tmp_path / "votes.jsonl"
    path.write_text("".join(json.dumps(v) + "\n" for v in votes))
    assert [v.score for v in load_votes(path)[8:10]] == [0.5, 1.0]
    out = subprocess.run(
        [sys.executable, "-m", "selfplay.ratings", str(path), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert [r.split("|")[2].strip() for r in out.stdout.splitlines()[2:5]] == ["big", "mid", "small"]
    assert "a tie or both bad is a draw" in (tmp_path / "r" / "ratings.md").read_text()
    assert (tmp_path / "r" / "ratings.png").read_bytes()[:4] == b"\x89PNG"
    path.write_text(json.dumps(vote("big", "big", "a")) + "\n")
    with pytest.raises(LabelFileError, match=r"votes.jsonl:1: a model voted against itself"):
        load_votes(path)
    with pytest.raises(ratings.RatingsError):
        ratings.vote_ratings([], tmp_path)


# --- the queue ----------------------------------------------------------------------------------------
def _bench(tmp_path, mode="compare", n_items=6, **kw) -> Workbench:
    items = [Item(f"i{k}", f"{k}+1=") for k in range(n_items)]
    models = kw.pop("models", {"x": Fake("1"), "y": Fake("2")})
    return Workbench(mode, Queue(tmp_path, mode, lease_s=kw.pop("lease_s", 1800)), models, items=items, **kw)


def test_a_labeller_resumes_their_item_and_forms_are_refused_with_reasons(tmp_path):
    bench = _bench(tmp_path)
    ann = bench.next("ann")
    assert bench.next("ann").token == ann.token  # a reload shows the same item, the same form
    bob = bench.next("bob")
    assert bob.prompt != ann.prompt
    records = bench.queue.records
    for token, who, choice, says in [
        ("forged", "ann", "0", "unknown form token"),
        (bob.token, "ann", "0", "handed to 'bob'"),
        (ann.token, "ann", "2", "choice '2' is not one of 0, 1, tie, all_bad"),
    ]:
        with pytest.raises(FormError, match=says):
            bench.submit(who, token, choice)
    assert not records.exists()  # nothing recorded by a refused form
    assert bench.submit("ann", ann.token, "1")["pick"] == 1
    with pytest.raises(FormError, match="already submitted"):
        bench.submit("ann", ann.token, "0")
    assert [r["id"] for r in lines(records)] == ["i0"]
    # a later session (a new workbench on the same files) picks up where the queue stands
    again = _bench(tmp_path)
    assert again.next("bob").token == bob.token
    assert again.next("ann").prompt not in (ann.prompt, bob.prompt)


def test_an_abandoned_item_is_freed_after_its_lease_and_labelled_once(tmp_path):
    bench = _bench(tmp_path, n_items=1, lease_s=0.0)
    ann = bench.next("ann")
    bob = bench.next("bob")  # ann's lease is over: the item goes to bob
    assert bob.prompt == ann.prompt and bob.token != ann.token
    bench.submit("bob", bob.token, "tie")
    with pytest.raises(FormError, match="already labelled by 'bob'"):
        bench.submit("ann", ann.token, "0")
    assert bench.next("ann") is None and len(lines(bench.queue.records)) == 1


def _label_all(directory: str, who: str, seen, barrier) -> None:
    """Label in step with the other process: both hold an item at once, every round."""
    bench = _bench(Path(directory), n_items=40)
    while True:
        view = bench.next(who)
        barrier.wait(30)
        if view is None:
            return
        seen.put((who, view.prompt))
        bench.submit(who, view.token, "0")


def test_two_labellers_in_two_processes_never_get_the_same_item(tmp_path):
    ctx = mp.get_context("spawn")
    seen, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_label_all, args=(str(tmp_path), w, seen, barrier)) for w in ("ann", "bob")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    shown = [seen.get(timeout=5) for _ in range(40)]
    assert seen.empty()
    assert len({prompt for _, prompt in shown}) == 40  # 40 items, each shown once
    records = lines(tmp_path / "comparisons.jsonl")
    assert sorted(r["id"] for r in records) == sorted(f"i{k}" for k in range(40))
    assert sorted(r["labeller"] for r in records) == ["ann"] * 20 + ["bob"] * 20


def test_two_judges_of_one_name_in_two_processes_share_the_queue_as_two_people_do(tmp_path, checkpoints):
    args = ["compare", *ENV_ARGS, "--tasks", "30", "--checkpoint", checkpoints[0], "--checkpoint"]
    args += [checkpoints[1], "--temperature", "1", "--judge", "env", "--out", str(tmp_path)]
    cmd = [sys.executable, "-m", "selfplay.label", *args]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1000:] for _, err in outs]
    records = lines(tmp_path / "comparisons.jsonl")
    made = [int(re.search(r"judge:env: (\d+) records", out).group(1)) for out, _ in outs]
    assert len(records) == len({r["id"] for r in records}) == sum(made) > 20  # each item once, by one
    assert all(r["labeller"] == "judge:env" for r in records)


def test_a_judges_open_claim_is_its_own_only_once_its_process_is_gone(tmp_path):
    from selfplay.label.queue import this_session

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = this_session().rpartition(":")[0]
        queue, items = Queue(tmp_path, "compare"), ["i0", "i1"]
        held = queue.next("judge:env", items, lambda i: {"prompt": i}, session=f"{host}:{other.pid}")
        mine = queue.next("judge:env", items, lambda i: {"prompt": i}, session=this_session())
        assert (held.item, mine.item) == ("i0", "i1")  # a running judge's claim is not another's
        assert queue.next("judge:env", items, lambda i: {}, session=this_session()).token == mine.token
    finally:
        other.kill()
        other.wait()
    # its process gone, the claim goes back to the judge of that name (a resumed labelling stage)
    again = queue.next("judge:env", ["i0"], lambda i: {}, session=f"{host}:{os.getpid()}-later")
    assert again.token == held.token


@pytest.mark.parametrize(
    "text, says",
    [
        (
            "2+2=\n\x1b]0;pwned\x07\x1b[2J1+1=\n",
            ":2: the prompt holds the control character '\\x1b' (U+001B)",
        ),
        ("2+2=\n1\u202e+1=\n", ":2: the prompt holds the control character '\\u202e'"),
        ("2+2=\n1+\u00e9=\n", ":2: checkpoint model0 cannot read this prompt: character '\u00e9'"),
    ],
    ids=["escape sequence", "bidi override", "not in the vocabulary"],
)
def test_a_prompt_no_model_can_read_is_refused_naming_file_and_line(tmp_path, checkpoints, text, says):
    path = tmp_path / "p.txt"
    path.write_text(text)
    argv = ["compare", "--prompts", str(path), "--checkpoint", checkpoints[0], "--out", str(tmp_path / "o")]
    done = label(*argv, "--terminal", "--labeller", "ann", stdin="a\n")
    assert done.returncode == 1 and f"error: {path}{says}" in done.stderr, done.stderr
    assert "\x1b" not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "o" / "comparisons.jsonl").exists()


# --- the terminal ---------------------------------------------------------------------------------------
def test_the_terminal_labels_each_mode_from_piped_input(tmp_path, checkpoints):
    out, a, b = str(tmp_path), *checkpoints
    common = [*ENV_ARGS, "--out", out, "--terminal", "--labeller", "ann", "--tasks", "20"]
    run = label(
        "compare", *common, "--checkpoint", a, "--checkpoint", b, "--n", "3", stdin="a\nb\nzz\nt\nx\nq\n"
    )
    assert run.returncode == 0, run.stderr
    assert "refused: 'zz' is not one of" in run.stdout
    picks = lines(tmp_path / "comparisons.jsonl")
    assert [r["pick"] for r in picks] == [0, 1, "tie", "all_bad"]
    assert all(len(r["completions"]) == 3 and r["labeller"] == "ann" for r in picks)
    assert {c["model"] for c in picks[0]["completions"]} == {"model0", "model1"}
    verifier = tmp_path / "verifier"  # the verifier trains on the person's picks as pairs
    train = ["train", "--pairs", str(tmp_path / "comparisons.jsonl"), "--out", str(verifier), "--steps", "2"]
    assert verifier_main([*train, "--block-size", "64", "--val-fraction", "0.5", "--no-progress"]) == 0
    assert (verifier / "config.json").exists()
    judged = tmp_path / "judged"  # and that verifier can judge in a person's place
    args = ["compare", *ENV_ARGS, "--checkpoint", a, "--out", str(judged), "--tasks", "20", "--items", "3"]
    assert label_main([*args, "--judge", f"verifier:path={verifier},noise=0"]) == 0
    judged_by = lines(judged / "comparisons.jsonl")
    assert len(judged_by) == 3 and {r["labeller"] for r in judged_by} == {
        f"judge:verifier:path={verifier},noise=0"
    }
    longest = envs.make("arithmetic", digits=1).max_completion_chars  # the default answer length
    assert picks[0]["sampling"] == {"temperature": 1.0, "top_k": None, "max_new_tokens": longest, "seed": 0}

    run = label("correct", *common, "--checkpoint", a, stdin="/accept\n 7\n/skip\n/quit\n")
    assert run.returncode == 0, run.stderr
    fixed = lines(tmp_path / "corrections.jsonl")
    env = envs.make("arithmetic", digits=1)
    task = next(t for t in sample_tasks(env, 200, seed=0) if t.id == fixed[0]["source"]["task"])
    assert [(r["completion"], r["suggested"]) for r in fixed] == [(env.expert(task), True), ("7", False)]
    assert fixed[0]["judge"] == {"by": "env", "score": 0.0} and fixed[0]["model"] == "model0"
    assert fixed[0]["source"]["env"] == "arithmetic" and fixed[0]["sampling"]["temperature"] == 0.0

    run = label("arena", *common, "--checkpoint", a, "--checkpoint", b, stdin="1+2=\na\n3+4=\nt\n\n")
    assert run.returncode == 0, run.stderr
    votes = lines(tmp_path / "votes.jsonl")
    assert [(v["prompt"], v["winner"]) for v in votes] == [("1+2=", "a"), ("3+4=", "tie")]
    assert f"a was {votes[0]['a']['model']}, b was {votes[0]['b']['model']}" in run.stdout
    assert "| model" in (tmp_path / "ratings.md").read_text()
    assert (tmp_path / "ratings.png").exists()


def test_bad_arguments_fail_before_any_model_loads(tmp_path, checkpoints):
    for args, says in [
        (["correct", *ENV_ARGS, "--checkpoint", checkpoints[0], "--checkpoint", checkpoints[1]], "at most 1"),
        (["arena", "--checkpoint", checkpoints[0]], "at least 2"),
        (["compare", "--checkpoint", checkpoints[0]], "needs prompts"),
        (["compare", *ENV_ARGS, "--checkpoint", str(tmp_path)], "no checkpoint there"),
        (["compare", "--env", "tictactoe", "--checkpoint", checkpoints[0]], "is a game"),
        (
            ["compare", "--prompts", str(tmp_path / "none.txt"), "--checkpoint", checkpoints[0]],
            "no such prompt",
        ),
    ]:
        with pytest.raises(SystemExit, match=re.escape(says)):
            label_main([*args, "--out", str(tmp_path / "out"), "--terminal"])


# --- the web page (HTTP; the browser test clicks through it) --------------------------------------------
class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path="/"):
        return self.opener.open(self.base + path).read().decode()

    def post(self, path, data: bytes | dict, headers=None):
        body = data if isinstance(data, bytes) else urllib.parse.urlencode(data).encode()
        req = urllib.request.Request(self.base + path, data=body, headers=headers or {})
        try:
            r = self.opener.open(req)
            return r.status, html.unescape(r.read().decode())
        except urllib.error.HTTPError as e:
            return e.code, html.unescape(e.read().decode())


def token(page: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


@pytest.fixture
def served(tmp_path):
    servers = []

    def serve(bench):
        server = make_server(bench, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def test_the_page_escapes_model_output_and_refuses_bad_posts(tmp_path, served):
    bench = _bench(tmp_path, models={"x": Fake("<script>alert(1)</script>"), "y": Fake("2")})
    base = served(bench)
    ann, bob = Client(base), Client(base)
    assert "Who is labelling?" in ann.get()
    ann.post("/name", {"labeller": "ann"})
    bob.post("/name", {"labeller": "bob"})
    page = ann.get()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "script-src" not in page  # and the policy header forbids scripts (default-src 'none')
    t = token(page)
    assert token(bob.get()) != t and re.search(r'id="prompt">([^<]*)', bob.get()).group(1) != re.search(
        r'id="prompt">([^<]*)', page
    ).group(1)
    refused = [
        ({"token": t}, "no 'choice' field"),
        ({"token": t, "choice": "9"}, "not one of"),
        (b"token=" + t.encode() + b"&choice=0&choice=1", "given twice"),
        ({"token": "x" * 20, "choice": "0"}, "unknown form token"),
    ]
    for data, says in refused:
        status, body = ann.post("/submit", data)
        assert status == 400 and says in body, (data, body)
    status, body = ann.post("/submit", {"token": t, "choice": "0"}, {"Origin": "http://evil.example"})
    assert status == 400 and "another origin" in body
    host = urllib.request.Request(base + "/", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as e:
        ann.opener.open(host)
    assert e.value.code == 421
    assert not bench.queue.records.exists()  # nothing recorded by any of them
    assert ann.post("/submit", {"token": t, "choice": "0"})[0] == 200  # then the real vote, followed
    status, body = ann.post("/submit", {"token": t, "choice": "0"})
    assert status == 400 and "already submitted" in body
    assert len(lines(bench.queue.records)) == 1


def test_the_arena_page_shows_the_names_only_after_the_vote(tmp_path, served):
    bench = Workbench("arena", Queue(tmp_path, "arena"), {"alpha": Fake("1"), "beta": Fake("2")})
    client = Client(served(bench))
    client.post("/name", {"labeller": "ann"})
    status, page = client.post("/ask", {"prompt": "1+1="})
    assert status == 200 and "alpha" not in page and "beta" not in page
    status, page = client.post("/submit", {"token": token(page), "choice": "b"})
    assert status == 200 and re.search(r"A was <b>(alpha|beta)</b>,\s*B was <b>(alpha|beta)</b>", page)
    assert [v["winner"] for v in lines(tmp_path / "votes.jsonl")] == ["b"]
    assert client.post("/ask", {"prompt": "  "})[0] == 400


def _start(args: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfplay.label", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    line = proc.stdout.readline()
    url = re.search(r"open (http://\S+)/", line)
    assert url and url.group(1).startswith("http://localhost:"), line  # localhost unless --host
    return proc, url.group(1)


def test_a_killed_server_loses_no_saved_vote(tmp_path, checkpoints):
    args = ["compare", *ENV_ARGS, "--checkpoint", checkpoints[0], "--out", str(tmp_path), "--tasks", "30"]
    proc, base = _start(args)
    try:
        client = Client(base)
        client.post("/name", {"labeller": "ann"})
        for choice in ("0", "1", "tie"):
            assert client.post("/submit", {"token": token(client.get()), "choice": choice})[0] == 200
        pending = token(client.get())  # a page shown, not answered, when the server dies
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = lines(tmp_path / "comparisons.jsonl")
    assert [r["pick"] for r in before] == [0, 1, "tie"]
    proc, base = _start(args)
    try:
        client = Client(base)
        client.post("/name", {"labeller": "ann"})
        assert token(client.get()) == pending  # the same item, the same form: answerable after the restart
        assert client.post("/submit", {"token": pending, "choice": "all_bad"})[0] == 200
        assert client.post("/submit", {"token": token(client.get()), "choice": "0"})[0] == 200
    finally:
        proc.terminate()  # SIGTERM: stops as Ctrl-C does (which a shell may have told it to ignore)
        assert proc.wait(30) == 0
    after = lines(tmp_path / "comparisons.jsonl")
    assert after[:3] == before and [r["pick"] for r in after[3:]] == ["all_bad", 0]
    assert len({r["id"] for r in after}) == 5


# --- the stages that read the records -------------------------------------------------------------------
def test_text_imitation_trains_on_corrections_of_prompts_with_no_environment(tmp_path, checkpoints):
    prompts = tmp_path / "questions.txt"
    prompts.write_text("Capital of France?\nCapital of Italy?\n")
    out = tmp_path / "labels"
    run = label(
        "correct",
        "--prompts",
        str(prompts),
        "--checkpoint",
        checkpoints[0],
        "--max-new-tokens",
        "8",
        "--out",
        str(out),
        "--terminal",
        "--labeller",
        "ann",
        stdin="/accept\nParis\nRome\n",
    )
    assert run.returncode == 0, run.stderr
    assert "refused: choice 'accept' is not one of write, skip" in run.stdout  # no suggestion to accept
    fixed = lines(out / "corrections.jsonl")
    assert [(r["prompt"], r["completion"], r["judge"]) for r in fixed] == [
        ("Capital of France?", "Paris", {"by": "none"}),
        ("Capital of Italy?", "Rome", {"by": "none"}),
    ]
    assert fixed[0]["source"] == {"file": str(prompts)}
    config = ROOT / "configs/arithmetic.yaml"
    overrides = [
        f"run_dir={tmp_path / 'run'}",
        f"transcripts.corrections=[{out / 'corrections.jsonl'}]",
        "transcripts.games=50",
        "imitation.max_steps=100",
        "imitation.eval_every=100",
        "imitation.eval_positions=10",
        "rl.algorithm=none",
    ]
    from selfplay.run import main

    assert main([str(config), *overrides, "--no-progress"]) == 0
    summary = json.loads((tmp_path / "run" / "imitation.json").read_text())
    assert summary["correction_examples"] == 2
    p = agents.load(tmp_path / "run" / summary["checkpoint"])
    ids = [p.encode_prompt(r["prompt"]) for r in fixed], [p.encode_move(r["completion"]) for r in fixed]
    logits, tgt, _ = forward_completions(p.model, *ids, p.tokenizer.pad_id, p.device)
    assert F.cross_entropy(logits, tgt).item() < 1.0  # learned (0.17 here; a random model's is ~4.6)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(
        ConfigError, match=r"transcripts.corrections: .*bad.jsonl:1: missing key 'completion'"
    ):
        load_config(config, [f"transcripts.corrections=[{bad}]"])
