"""Judges answer the workbench's forms in place of a person: their votes, their noise, a judged arena's
ratings, corrections, and audits of their labels."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import envs
from envs.reward import sample_tasks
from selfplay.io.labels import audit_agreement
from selfplay.label import Queue
from selfplay.label.judges import JudgeSpecError, make_judge, parse_spec, run_judge
from selfplay.label.workbench import Item, Workbench

ROOT = Path(__file__).resolve().parents[1]
ENV = envs.make("arithmetic", digits=2, ops="+")


class Skilled:
    """Answers a fixed share of prompts rightly (which ones: a hash of the prompt), the rest wrongly."""

    def __init__(self, skill: float) -> None:
        self.skill = skill

    def generate(self, prompts, **knobs):
        out = []
        for p in prompts:
            a, b = (int(x) for x in p.rstrip("=").split("+"))
            h = int.from_bytes(hashlib.sha256(f"{self.skill}/{p}".encode()).digest()[:4], "little") / 2**32
            out.append(str(a + b if h < self.skill else a + b + 1))
        return out


def tasks(n: int, seed: int = 0) -> list[Item]:
    """`n` distinct tasks."""
    out = {t.id: Item(t.id, ENV.prompt_for(t), t) for t in sample_tasks(ENV, 2 * n, seed=seed)}
    return list(out.values())[:n]


def bench(tmp_path, mode, models, **kw) -> Workbench:
    return Workbench(mode, Queue(tmp_path, mode), models, env=ENV, **kw)


def test_a_noiseless_judge_picks_the_right_answer_ties_and_all_bad(tmp_path):
    judge = make_judge("env", env=ENV)
    item = tasks(1)[0]
    right = str(ENV.expert(item.task))
    choices, bad = ["0", "1", "2"], "all_bad"
    assert judge.vote(item, ["x", right, "y"], choices, bad) == "1"
    assert judge.vote(item, [right, right], choices, bad) == "tie"
    assert judge.vote(item, ["x", "y"], choices, bad) == "all_bad"
    assert judge.vote(item, [right, "x", right], choices, bad) in ("0", "2")


def test_noise_flips_that_share_of_votes(tmp_path):
    judge, item = make_judge("env:noise=0.2", env=ENV, seed=1), tasks(1)[0]
    right = str(ENV.expert(item.task))
    votes = [judge.vote(item, ["x", right], ["a", "b"], "both_bad") for _ in range(3000)]
    flipped = sum(v != "b" for v in votes) / len(votes)
    assert abs(flipped - 0.2) < 0.03  # binomial SE 0.007
    assert {v for v in votes if v != "b"} == {"a", "tie", "both_bad"}  # a flip is any other choice


def test_a_judged_arena_ranks_models_by_their_accuracy_and_writes_the_table(tmp_path):
    models = {"weak": Skilled(0.2), "mid": Skilled(0.5), "strong": Skilled(0.8)}
    b = bench(tmp_path, "arena", models)
    judge = make_judge("env:noise=0.1", env=ENV)
    made = run_judge(b, judge, prompts=tasks(200), votes=100, progress=False)
    assert made == 300
    votes = [json.loads(x) for x in (tmp_path / "votes.jsonl").read_text().splitlines()]
    pairs = {tuple(sorted((v["a"]["model"], v["b"]["model"]))) for v in votes}
    assert len(pairs) == 3 and all(v["labeller"] == "judge:env:noise=0.1" for v in votes)
    assert all(v["source"]["env"] == "arithmetic" for v in votes)
    table = (tmp_path / "ratings.md").read_text().splitlines()
    assert [row.split("|")[2].strip() for row in table[2:5]] == ["strong", "mid", "weak"]
    assert (tmp_path / "ratings.png").read_bytes()[:4] == b"\x89PNG"


def test_an_audit_of_a_noisy_judge_reports_its_agreement(tmp_path):
    models = {"weak": Skilled(0.3), "strong": Skilled(0.7)}
    items = tasks(400)
    made = run_judge(
        bench(tmp_path, "compare", models, items=items), make_judge("env:noise=0.25", env=ENV), progress=False
    )
    assert made == 400
    records = [json.loads(x) for x in (tmp_path / "comparisons.jsonl").read_text().splitlines()]
    audit = bench(tmp_path, "audit", {}, items=items, audited=records)
    assert run_judge(audit, make_judge("env", env=ENV), progress=False) == 400
    got = audit_agreement(tmp_path / "audits.jsonl")["judge:env:noise=0.25"]
    assert got["n"] == 400 and abs(got["agree"] - 0.75) < 0.07  # SE 0.022
    assert "judge:env:noise=0.25 | 400 |" in (tmp_path / "audit.md").read_text()


def test_a_judge_corrects_with_the_expert_and_noise_keeps_wrong_answers(tmp_path):
    items = tasks(300)
    wrong = lambda item, answer: {"by": "env", "score": 0.0}  # noqa: E731
    b = bench(tmp_path, "correct", {"m": Skilled(0.0)}, items=items, wrong=wrong)
    assert run_judge(b, make_judge("env:noise=0.1", env=ENV, seed=3), items=300, progress=False) == 300
    fixed = [json.loads(x) for x in (tmp_path / "corrections.jsonl").read_text().splitlines()]
    by_id = {it.id: it for it in items}
    right = [ENV.score(by_id[r["id"]].task, r["completion"]) == 1.0 for r in fixed]
    assert abs(sum(right) / len(right) - 0.9) < 0.05
    assert all(r["suggested"] == ok for r, ok in zip(fixed, right, strict=True))


def test_judge_specs_are_checked_before_anything_loads(tmp_path):
    assert parse_spec("env:noise=0.1") == ("env", {"noise": "0.1"})
    for spec, says in [
        ("oracle", "must be env or verifier"),
        ("env:noise=2", "in [0, 1]"),
        ("env:noise=x", "must be a number"),
        ("env:temperature=1", "unknown option"),
        ("verifier", "verifier:path=DIR"),
        ("env:noise", "is not KEY=VALUE"),
    ]:
        with pytest.raises(JudgeSpecError, match=re.escape(says)):
            parse_spec(spec)
    with pytest.raises(JudgeSpecError, match="needs an environment"):
        make_judge("env")
    run = subprocess.run(
        [sys.executable, "-m", "selfplay.label", "compare", "--env", "arithmetic", "--judge", "env:noise=3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert run.returncode != 0 and "noise must be in [0, 1]" in run.stderr


def test_a_run_trains_its_verifier_on_a_judges_comparisons_and_people_come_first(tmp_path, capsys):
    from test_text_rl import TINY

    from selfplay.config import ConfigError, load_config
    from selfplay.run import main

    run = tmp_path / "run"
    argv = [
        str(ROOT / "configs/arithmetic.yaml"),
        f"run_dir={run}",
        *TINY,
        "rl.reward=verifier",
        "rl.steps=2",
    ]
    argv += ["verifier.labels=comparisons", "judge.noise=0.1", "verifier.tasks=30", "imitation.max_steps=200"]
    assert main([*argv, "--no-progress"]) == 0
    records = [json.loads(x) for x in (run / "labels" / "comparisons.jsonl").read_text().splitlines()]
    assert len(records) == len({r["id"] for r in records}) >= 25  # one a distinct task
    assert {r["labeller"] for r in records} == {"judge:env:noise=0.1"}
    assert all(len(r["completions"]) == 3 for r in records)
    summary = json.loads((run / "verifier.json").read_text())
    assert summary["train_completions"] == 0 and summary["train_pairs"] > 0  # pairs alone
    people = tmp_path / "people"
    argv = [*argv[:1], f"run_dir={people}", *argv[2:], "judge.kind=people"]
    assert main([*argv, "--no-progress"]) == 2
    assert "label first: python -m selfplay.label compare --run" in capsys.readouterr().err
    for bad, says in [
        (["verifier.labels=comparisons"], "rl.reward: programmatic"),
        (["rl.reward=verifier", "judge.kind=verifier"], "judge.kind: Input should be 'env' or 'people'"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_config(ROOT / "configs/arithmetic.yaml", bad)


def test_the_verifier_is_retrained_on_the_latest_samples_during_rl_and_actors_follow(tmp_path, capsys):
    from test_text_rl import TINY

    from selfplay.config import ConfigError, load_config
    from selfplay.run import main

    run = tmp_path / "run"
    argv = [str(ROOT / "configs/arithmetic.yaml"), f"run_dir={run}", *TINY, "rl.reward=verifier"]
    argv += ["verifier.labels=comparisons", "judge.noise=0.1", "verifier.tasks=30", "imitation.max_steps=200"]
    argv += ["rl.steps=5", "rl.verifier_refresh_every=2", "rl.verifier_refresh_tasks=20"]
    argv += ["rl.verifier_refresh_steps=5", "rl.actors=1", "rl.eval_every=2", "--no-progress"]
    assert main(argv) == 0  # refreshes at steps 2 and 4, an actor process scoring with each
    out = capsys.readouterr().out
    for step, parent in ((2, "checkpoints/verifier"), (4, "checkpoints/verifier_step_000002")):
        meta = json.loads((run / f"checkpoints/verifier_step_{step:06d}/meta.json").read_text())
        assert meta["refreshed_at"] == step and meta["parent"] == parent and meta["stage"] == "verifier"
        assert "metrics" not in meta and meta["kept_step"] in range(6)  # not the first one's measurements
        lines = (run / f"labels/refresh_{step:06d}/comparisons.jsonl").read_text().splitlines()
        records = [json.loads(r) for r in lines]  # one per distinct task of the 20 drawn
        assert 10 <= len(records) == len({r["id"] for r in records}) <= 20
        # judged on the new round's held-out tasks alone (a tenth of at most 20), each counted once
        assert 1 <= meta["val_before"]["n_pairs"] == meta["val"]["n_pairs"] <= 2
        assert {r["labeller"] for r in records} == {"judge:env:noise=0.1"}
    assert (
        json.loads((run / "rl/verifier.json").read_text())["checkpoint"] == "checkpoints/verifier_step_000004"
    )
    summary = json.loads((run / "rl.json").read_text())
    assert summary["verifier"] == "checkpoints/verifier_step_000004"
    last = summary["evals"][-1]
    assert {"heldout_verifier_score", "heldout_frozen_verifier_score"} <= set(last)
    if "heldout_frozen_verifier_auc" in last:  # the answers held both right and wrong ones
        assert "verifier ROC-AUC on the policy's held-out answers: refreshed" in out
    # a resumed run scores with the refresh it had reached, and refreshes on from there
    (run / "rl/verifier.json").unlink()
    assert main(["--resume", str(run), "rl.steps=7", "--no-progress"]) == 0
    assert "resuming at step 5" in capsys.readouterr().out
    assert json.loads((run / "rl.json").read_text())["verifier"] == "checkpoints/verifier_step_000006"
    meta = json.loads((run / "checkpoints/verifier_step_000006/meta.json").read_text())
    assert meta["parent"] == "checkpoints/verifier_step_000004"
    for bad, says in [
        (["rl.verifier_refresh_every=10"], "rl.reward: programmatic uses no verifier"),
        (
            [
                "rl.reward=verifier",
                "rl.verifier_refresh_every=10",
                "verifier.labels=comparisons",
                "judge.kind=people",
            ],
            "judge.kind: people cannot label while RL runs",
        ),
    ]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            load_config(ROOT / "configs/arithmetic.yaml", bad)


def test_correction_rounds_on_a_reward_environment_train_on_the_judges_corrections(tmp_path, capsys):
    from test_text_rl import TINY

    from selfplay.run import main

    run = tmp_path / "run"
    argv = [str(ROOT / "configs/arithmetic.yaml"), f"run_dir={run}", *TINY, "rl.algorithm=none"]
    argv += ["corrections.rounds=2", "corrections.games=40", "corrections.steps=20"]
    argv += ["corrections.temperature=0", "judge.noise=0.1", "imitation.max_steps=60"]
    assert main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    fixed = [json.loads(x) for x in (run / "labels" / "corrections.jsonl").read_text().splitlines()]
    assert fixed and {r["labeller"] for r in fixed} == {"judge:env:noise=0.1"}
    assert all(r["judge"]["by"] == "env" and r["sampling"]["temperature"] == 0 for r in fixed)
    for r in (1, 2):
        assert f"corrections {r}: " in out
        summary = json.loads((run / f"corrections_{r}.json").read_text())
        assert summary["round_examples"] >= summary["train_examples"] // 3  # repeated to about half
        meta = json.loads((run / "checkpoints" / f"corrections_{r}" / "meta.json").read_text())
        assert meta["stage"] == "corrections" and meta["parent"].endswith("imitation" if r == 1 else "_1")
    assert main(["--resume", str(run), "--no-progress"]) == 0  # both rounds reused
    assert "corrections 2: reusing" in capsys.readouterr().out
