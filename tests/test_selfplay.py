"""Stage 2 end to end on tiny budgets: actors, learner, checkpoints, evaluation, resume after SIGKILL."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import agents
import envs
import selfplay.games.selfplay as learner
from selfplay.config import SelfPlayConfig, load_config
from selfplay.games.actor import Actor, Trajectory
from selfplay.run import main

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "transcripts.games=60",
    "model.size=nano",
    "model.block_size=64",
    "imitation.max_steps=30",
    "imitation.eval_every=15",
    "selfplay.steps=12",
    "selfplay.checkpoint_every=6",
    "selfplay.games_per_actor=8",
    "selfplay.simulations=8",
    "selfplay.min_replay=32",
    "selfplay.batch_size=16",
    "evaluation.games=4",
    "evaluation.baselines=[random]",
    "evaluation.recent=2",
]


def tiny_config(tmp_path, *extra):
    return load_config(ROOT / "configs/tictactoe.yaml", [f"run_dir={tmp_path / 'run'}", *TINY, *extra])


def test_alphazero_actor_records_search_targets(tmp_path, ttt_nano):
    cfg = tiny_config(tmp_path).selfplay
    actor = Actor(cfg, envs.make("tictactoe"), agents.load(ttt_nano, device="cpu"), seed=1)
    finished: list[Trajectory] = []
    while len(finished) < 8:
        finished += actor.step()
    game = envs.make("tictactoe")
    for t in finished:
        opening = len(t.moves) - len(t.prompts)  # random moves before the recorded ones
        assert opening == cfg.opening_plies
        assert len(t.prompts) == len(t.legal) == len(t.targets) == len(t.chosen)
        state = game.new_initial_state()
        for move in t.moves[:opening]:
            state.apply_action(state.text_to_action(move))
        for prompt, legal, target, chosen, move in zip(
            t.prompts, t.legal, t.targets, t.chosen, t.moves[opening:], strict=True
        ):
            assert prompt == state.prompt() and list(legal) == state.legal_texts()
            assert target.shape == (len(legal),) and abs(target.sum() - 1) < 1e-5
            assert legal[chosen] == move
            state.apply_action(state.text_to_action(move))
        assert state.is_terminal() and t.returns == state.returns()
    stats = actor.take_stats()
    assert stats.simulations > 0 and 0 < stats.net_seconds < stats.seconds


def test_playout_cap_randomisation_records_only_full_searches(tmp_path, ttt_nano):
    extra = ("selfplay.fast_simulations=2", "selfplay.full_search_prob=0.3", "selfplay.opening_plies=0")
    cfg = tiny_config(tmp_path, *extra).selfplay
    actor = Actor(cfg, envs.make("tictactoe"), agents.load(ttt_nano, device="cpu"), seed=1)
    finished: list[Trajectory] = []
    while len(finished) < 16:
        finished += actor.step()
    recorded = sum(len(t.plies) for t in finished)
    moves = sum(len(t.moves) for t in finished)
    assert 0.1 * moves < recorded < 0.5 * moves  # about 30% of the moves, with their full-search targets
    game = envs.make("tictactoe")
    for t in finished:
        state, at = game.new_initial_state(), dict(zip(t.plies, range(len(t.plies)), strict=True))
        for ply, move in enumerate(t.moves):
            if ply in at:
                k = at[ply]
                assert t.prompts[k] == state.prompt() and t.legal[k][t.chosen[k]] == move
                assert abs(t.targets[k].sum() - 1) < 1e-5
            state.apply_action(state.text_to_action(move))
    stats = actor.take_stats()
    assert stats.simulations < cfg.simulations * moves  # cheap searches in between


def test_alphazero_loss_moves_policy_toward_visit_targets(tmp_path, ttt_nano):
    cfg = tiny_config(tmp_path).selfplay
    policy = agents.load(ttt_nano, device="cpu")
    state = envs.make("tictactoe").new_initial_state()
    target = np.zeros(9, dtype=np.float32)
    target[4] = 1.0
    sample = learner.Sample(state.prompt(), tuple(state.legal_texts()), 4, target, 1.0, 0.0, 0.0, 0)
    opt = torch.optim.Adam(policy.model.parameters(), lr=3e-3)
    before = policy.evaluate([state])[0]
    for _ in range(30):
        loss, metrics = learner.losses(policy, [sample] * 4, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = policy.evaluate([state])[0]
    assert after.probs[4] > 0.9 > before.probs[4]
    assert after.value > before.value and metrics["charts/value_accuracy"] == 1.0


def test_value_mix_learns_the_search_value_beside_the_outcome(tmp_path, ttt_nano):
    policy = agents.load(ttt_nano, device="cpu")
    state = envs.make("tictactoe").new_initial_state()
    target = np.full(9, 1 / 9, dtype=np.float32)
    # the game was won (outcome 1) from a position the search judged lost (root value -1)
    sample = learner.Sample(state.prompt(), tuple(state.legal_texts()), 4, target, 1.0, 0.0, -1.0, 0)
    values = {}
    for mix in (0.0, 0.75):
        cfg = tiny_config(tmp_path, f"selfplay.value_mix={mix}").selfplay
        policy = agents.load(ttt_nano, device="cpu")
        opt = torch.optim.Adam(policy.model.parameters(), lr=3e-3)
        for _ in range(40):
            loss, _ = learner.losses(policy, [sample] * 4, cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
        values[mix] = policy.evaluate([state])[0].value
    assert values[0.0] > 0.8 and -0.7 < values[0.75] < -0.2  # the target: 0.25 * 1 + 0.75 * -1 = -0.5
    with pytest.raises(ValueError, match="value_mix"):
        tiny_config(tmp_path, "selfplay.value_mix=0.5", "selfplay.algorithm=pg")
    tiny_config(tmp_path, "selfplay.value_mix=0.5", "selfplay.algorithm=none")  # stage 2 off: no refusal


def test_pg_loss_follows_the_advantage(tmp_path, ttt_nano):
    cfg = tiny_config(tmp_path, "selfplay.algorithm=pg", "selfplay.entropy_weight=0").selfplay
    policy = agents.load(ttt_nano, device="cpu")
    state = envs.make("tictactoe").new_initial_state()
    ev = policy.evaluate([state])[0]
    legal = tuple(state.legal_texts())
    won = learner.Sample(state.prompt(), legal, 2, None, 1.0, float(np.log(ev.probs[2])), 0.0, 0)
    lost = learner.Sample(state.prompt(), legal, 6, None, -1.0, float(np.log(ev.probs[6])), 0.0, 0)
    opt = torch.optim.Adam(policy.model.parameters(), lr=1e-3)
    for _ in range(5):
        loss, _ = learner.losses(policy, [won, lost], cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = policy.evaluate([state])[0]
    assert after.probs[2] > ev.probs[2] and after.probs[6] < ev.probs[6]


@pytest.mark.parametrize("algorithm", ["alphazero", "pg"])
def test_main_job_runs_every_stage(tmp_path, algorithm, capsys, monkeypatch):
    monkeypatch.setattr(SelfPlayConfig, "warmup_steps", 0)  # the learner runs here: the cosine from step 1
    run_dir = tmp_path / "run"
    argv = [str(ROOT / "configs/tictactoe.yaml"), f"run_dir={run_dir}", *TINY]
    argv += [
        f"selfplay.algorithm={algorithm}",
        "selfplay.actors=1",
        "evaluation.final_games=6",
        "selfplay.lr=0.001",
        "selfplay.min_lr_ratio=0.1",
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "selfplay: final checkpoint" in out
    for step in (6, 12):
        meta = agents.read_meta(run_dir / f"checkpoints/step_{step:06d}")
        assert meta["step"] == step and meta["stage"] == f"selfplay/{algorithm}"
        assert meta["game"] == "tictactoe"
    assert agents.read_meta(run_dir / "checkpoints/step_000006")["parent"].endswith("imitation")
    records = [json.loads(line) for line in (run_dir / "arena/matches.jsonl").read_text().splitlines()]
    # imitation's gauntlet at step 0 (random), then step 6's (random, imitation), step 12's (+ step 6),
    # then the final word: 6 games against random and imitation, of which step 12 played 4 already
    assert len(records) == 4 + 2 * 4 + 3 * 4 + 2 * 2
    final = (run_dir / "arena/final.md").read_text()
    for opponent in ("random", "checkpoints/imitation"):
        assert f"| checkpoints/step_000012 | {opponent} | 6 |" in final
    assert (run_dir / "arena/ratings.md").exists() and (run_dir / "arena/elo_by_step.png").exists()
    assert "| checkpoints/imitation |" in (run_dir / "arena/ratings.md").read_text()
    report = (run_dir / "report.md").read_text()
    assert "## Imitation" in report and "12 learner steps" in report and "League table" in report
    assert "## Scores against the baselines by step" in report and "vs random raw" in report
    assert "## The final checkpoint" in report
    tb = list((run_dir / "tb/selfplay").glob("events*"))
    assert tb and tb[0].stat().st_size > 0
    events = EventAccumulator(str(tb[0])).Reload()
    (lr,) = events.Scalars("charts/lr")  # logged at step 10 of 12: the cosine 9/12 of the way to lr / 10
    assert lr.step == 10 and lr.value == pytest.approx(1e-3 * (0.1 + 0.45 * (1 + math.cos(0.75 * math.pi))))
    if algorithm == "pg":
        pool = json.loads((run_dir / "selfplay/pool.json").read_text())["opponents"]
        assert any(e["path"].endswith("step_000006") for e in pool)
    # a second start without --resume would overwrite the run: refused
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err


def _step_of_state(run_dir: Path) -> int:
    try:
        return learner.load_state(run_dir)["step"]
    except Exception:
        return -1


@pytest.mark.slow
def test_killed_run_resumes_without_losing_a_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    args = [str(ROOT / "configs/tictactoe.yaml"), f"run_dir={run_dir}", *TINY, "selfplay.steps=40"]
    args += ["selfplay.checkpoint_every=5", "selfplay.actors=1", "evaluation.games=0", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "selfplay.run", *args], cwd=ROOT, env=env, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while _step_of_state(run_dir) < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    killed_at = _step_of_state(run_dir)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 10 <= killed_at < 40
    done_before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "checkpoints").glob("step_*")}
    out = subprocess.run(
        [sys.executable, "-m", "selfplay.run", "--resume", str(run_dir), "--no-progress"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    resumed_at = int(out.stdout.split("resuming at step ")[1].split()[0])
    assert killed_at <= resumed_at < 40
    steps = sorted(int(p.name[5:]) for p in (run_dir / "checkpoints").glob("step_*"))
    assert steps == list(range(5, 45, 5))
    for p in (run_dir / "checkpoints").glob("step_*"):
        agents.load(p, device="cpu")  # every checkpoint whole
        if int(p.name[5:]) <= resumed_at:
            assert p.stat().st_mtime_ns == done_before[p.name], f"{p.name} was rewritten"
    assert learner.load_state(run_dir)["step"] == 40
    assert not list(run_dir.rglob("*.tmp")), "temporary files left behind"


def test_minutes_budget_ends_with_a_checkpoint_of_the_last_step(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [str(ROOT / "configs/tictactoe.yaml"), f"run_dir={run_dir}", *TINY, "selfplay.actors=0"]
    argv += ["selfplay.steps=100000", "selfplay.checkpoint_every=100000", "selfplay.max_minutes=0.2"]
    assert main([*argv, "evaluation.games=0", "--no-progress"]) == 0
    assert "minute budget used" in capsys.readouterr().out
    state = learner.load_state(run_dir)
    assert 0 < state["step"] < 100000
    assert agents.read_meta(state["checkpoint"])["step"] == state["step"]


def test_evaluation_plays_one_gauntlet_per_search_budget(tmp_path, ttt_nano):
    import selfplay.arena.evaluation as evaluation

    class Writer:
        def __init__(self):
            self.tags = []

        def add_scalar(self, tag, value, step):
            self.tags.append(tag)

    config = tiny_config(
        tmp_path, "evaluation.simulations=[0, 4]", "evaluation.games=2", "evaluation.recent=0"
    )
    writer = Writer()
    results = evaluation.gauntlet(config, tmp_path, ttt_nano, 0, [ttt_nano], writer)
    assert set(results) == {"score/random", "score@mcts:4/random", "elo", "elo@mcts:4"}
    assert {"eval/elo", "eval/elo@mcts:4", "eval/score@mcts:4_vs_random"} <= set(writer.tags)
    records = [json.loads(line) for line in (tmp_path / "arena/matches.jsonl").read_text().splitlines()]
    assert len(records) == 4 and any("@mcts:4" in "".join(r["players"]) for r in records)
    # the scores by step: the checkpoint (a stage-1 one: step 0) against random, raw and searched
    table = (tmp_path / "arena/scores_by_step.md").read_text()
    assert "| step | checkpoint | vs random raw | vs random @mcts:4 |" in table
    row = next(line for line in table.splitlines() if line.startswith("| 0 |"))
    raw, searched = (float(c.split()[0]) for c in row.strip("| ").split(" | ")[2:])
    assert (raw, searched) == (results["score/random"], results["score@mcts:4/random"])
    assert (tmp_path / "arena/scores_by_step.png").stat().st_size > 0
    assert tiny_config(tmp_path, "evaluation.simulations=16").evaluation.simulations == [16]  # one number
