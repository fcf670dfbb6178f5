"""The arena: schedules, batched play, the matches file and its resumption, ratings of real players,
checkpoints over worker processes, the training API and bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import agents
import envs
import selfplay.arena.cli as arena
import selfplay.arena.ratings as ratings
from selfplay.arena.cli import MatchesError, load_matches, main, schedule

ROOT = Path(__file__).resolve().parents[1]


def save_checkpoint(path, game, *, step=0, stage="imitation", seed=0):
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=256)
    policy = agents.new_policy(cfg, device="cpu", seed=seed, meta={"game": game})
    return agents.save(policy, path, meta={"stage": stage, "step": step})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("arena")
    save_checkpoint(root / "ttt/checkpoints/imitation", "tictactoe", step=300)
    save_checkpoint(root / "ttt/checkpoints/step_000400", "tictactoe", step=400, stage="selfplay", seed=1)
    save_checkpoint(root / "c4/checkpoints/imitation", "connect_four")
    return root


def test_schedule_balances_colours_and_shares_openings():
    jobs = schedule(["b", "a", "c"], games=4, seed=0, opening_plies=2)
    assert len(jobs) == 12 and len({j.key for j in jobs}) == 12
    assert {j.pair for j in jobs} == {("a", "b"), ("b", "c"), ("a", "c")}
    ab = [j for j in jobs if j.pair == ("a", "b")]
    assert [j.colours[0] for j in ab] == ["a", "b", "a", "b"]
    game = envs.make("connect_four")
    openings = [j.opening(game).history() for j in ab]
    assert openings[0] == openings[1] != openings[2] == openings[3]
    assert all(len(o) == 2 for o in openings)
    assert schedule(["b", "a", "c"], games=4, seed=0, opening_plies=2) == jobs  # deterministic
    gauntlet = schedule(["x", "a", "c"], games=2, seed=0, opening_plies=0, gauntlet="x")
    assert {j.pair for j in gauntlet} == {("a", "x"), ("c", "x")}
    with pytest.raises(ValueError, match="even"):
        schedule(["a", "b"], games=3, seed=0, opening_plies=0)


class Counting:
    """A deterministic stub player that records how many states each act() call gets."""

    def __init__(self, name):
        self.name, self.calls = name, []

    def act(self, states):
        self.calls.append(len(states))
        return [s.legal_actions()[0] for s in states]

    def reset(self, seed):
        pass

    def for_game(self, seed):
        return self


def test_games_in_flight_share_one_act_call_per_ply():
    game = envs.make("tictactoe")
    a, b = Counting("a"), Counting("b")
    jobs = schedule(["a", "b"], games=8, seed=0, opening_plies=1)
    records = list(arena.play_games(game, jobs, {"a": a, "b": b}))
    assert len(records) == 8
    # Each ply, a player moves in the 4 games where it has that colour, all in one call: at most one
    # call per ply (9 in tic-tac-toe) where one per move would be about 8 games x 4 moves.
    assert max(a.calls) == max(b.calls) == 4
    assert len(a.calls) <= 9 and len(b.calls) <= 9
    assert sum(a.calls) + sum(b.calls) == sum(len(r["moves"]) - 1 for r in records)  # opening ply excluded
    for r in records:
        replay = game.new_initial_state()
        for m in r["moves"]:
            replay.apply_action(replay.text_to_action(m))
        assert replay.returns() == r["returns"]
        assert r["score"] == (replay.returns()[0] + 1) / 2


MINIMAX = ["minimax", "minimax:0.3", "minimax:0.7", "minimax:1.0", "random"]


def test_ratings_order_experts_of_known_strength(tmp_path):
    """Perfect play, diluted by more and more random moves: the ratings keep that order, and their
    intervals narrow as the games grow."""
    widths = []
    for games in (20, 80):
        out = tmp_path / str(games)
        arena.play("tictactoe", MINIMAX, games=games, seed=1, workers=1, out_dir=out, progress=False)
        rows = arena.ratings_from(out, samples=100)
        order = [r.name for r in rows]
        assert order[:3] == ["minimax", "minimax:epsilon=0.3", "minimax:epsilon=0.7"]
        assert set(order[3:]) == {"random", "minimax:epsilon=1.0"}  # the same player: either order
        widths.append(np.mean([r.hi - r.lo for r in rows if r.name != "random"]))
    assert widths[1] < 0.7 * widths[0]


def test_matches_file_resumes_without_replaying_or_losing_games(tmp_path, capsys):
    specs = ["minimax:0.5", "random", "mcts:20"]
    first = arena.play("tictactoe", specs, games=4, seed=0, workers=1, out_dir=tmp_path, progress=False)
    path = tmp_path / "matches.jsonl"
    assert len(first) == 12 and len(path.read_text().splitlines()) == 12
    before = path.read_bytes()
    again = arena.play("tictactoe", specs, games=4, seed=0, workers=1, out_dir=tmp_path, progress=False)
    assert path.read_bytes() == before and again == first  # nothing replayed
    with path.open("a") as f:
        f.write('{"format": "selfplay.match/1", "game": "tic')  # an arena killed mid-line
    more = arena.play("tictactoe", specs, games=6, seed=0, workers=1, out_dir=tmp_path, progress=False)
    assert "ignoring a truncated last line" in capsys.readouterr().err
    assert all(r in more for r in first)  # the recorded games kept, 6 more played
    lines = path.read_text().splitlines()
    assert len(lines) == 18 and all(json.loads(line) for line in lines)
    assert len(load_matches(path)) == 18
    path.write_text(path.read_text() + "not json\n" + lines[0] + "\n")
    with pytest.raises(MatchesError, match=r"matches.jsonl:19: not a match record"):
        load_matches(path)


def test_a_killed_arena_resumes_and_counts_each_game_once(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "selfplay.arena", "--game", "connect_four", "mcts:300", "alphabeta:2"]
    cmd += ["--games", "24", "--batch", "2", "--workers", "1", "--out", str(out), "--no-progress"]
    cmd += ["--bootstrap", "20"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = out / "matches.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = path.read_bytes()
    assert 4 <= kept.count(b"\n") < 24, "the arena should have been killed mid-run"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert path.read_bytes()[: kept.rfind(b"\n") + 1] == kept[: kept.rfind(b"\n") + 1]  # nothing lost
    records = [json.loads(line) for line in path.read_text().splitlines()]
    keys = [(r["index"], r["seed"], *r["pair"]) for r in records]
    assert sorted(k[0] for k in keys) == list(range(24)) and len(set(keys)) == 24  # each game once
    table = (out / "ratings.csv").read_text().splitlines()
    assert [line.split(",")[5] for line in table[1:]] == ["24", "24"]


def test_checkpoints_play_over_worker_processes(run):
    game_dir = run / "ttt"
    specs = [str(game_dir), f"{game_dir}/checkpoints/imitation@mcts:4", "random"]
    assert main(["--game", "tictactoe", *specs, "--games", "2", "--workers", "2", "--no-progress"]) == 0
    records = load_matches(game_dir / "arena" / "matches.jsonl")  # a run directory's own arena
    names = {n for r in records for n in r["players"]}
    assert "checkpoints/imitation@mcts:4" in names and len(names) == 4  # named relative to the run
    assert len(records) == 6 * 2
    rows = arena.ratings_from(game_dir / "arena", samples=20)
    steps = arena.steps_of([r.name for r in rows], game_dir)
    assert sorted(steps.values()) == [0, 0, 400]  # imitation is stage 2's step 0; search keeps its step
    png = ratings.plot_elo_by_step(rows, steps, game_dir / "arena" / "elo.png")
    assert png.stat().st_size > 1000


def test_gauntlet_api_for_training(run, tmp_path):
    candidate = str(run / "ttt/checkpoints/step_000400")
    records = arena.gauntlet(
        candidate, ["random", "minimax:0.5"], "tictactoe", games=4, seed=3, out_dir=tmp_path
    )
    assert len(records) == 8
    assert all(candidate.rsplit("/", 1)[1] in "".join(r["players"]) for r in records)
    rows = arena.ratings_from(tmp_path, samples=20)
    assert {r.name for r in rows} >= {"random", "minimax:epsilon=0.5"}
    elo = {"random": 0.0, "near": 410.0, "far": 1500.0}
    picks = arena.sample_opponents(elo, 400.0, 200, np.random.default_rng(0))
    assert picks.count("near") > picks.count("random") > picks.count("far")


def test_thinking_longer_writes_a_table_and_plot(run, tmp_path, capsys):
    ckpt = str(run / "ttt/checkpoints/imitation")
    argv = ["--game", "tictactoe", "--budgets", "0,2,8", ckpt, "--against", "random"]
    argv += ["--games", "2", "--workers", "1", "--out", str(tmp_path), "--no-progress", "--bootstrap", "20"]
    assert main(argv) == 0
    table = (tmp_path / "budgets.md").read_text()
    assert "| simulations | Elo |" in table and "| 8 |" in table and "| 0 |" in table
    assert (tmp_path / "budgets.png").read_bytes()[:4] == b"\x89PNG"
    assert "budgets.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["random", "nonsense"], "unknown player 'nonsense'"),
        (["random", "no/such/dir"], "no such checkpoint directory"),
        (["random", "{c4}"], "plays 'connect_four', not 'tictactoe'"),
        (["random", "minimax", "--games", "3"], "must be even"),
        (["random"], "at least two distinct players"),
        (["--budgets", "0,x", "{ttt}"], "comma-separated integers"),
    ],
)
def test_bad_input_is_an_error_before_any_game(run, tmp_path, capsys, argv, message):
    argv = [
        a.format(c4=run / "c4/checkpoints/imitation", ttt=run / "ttt/checkpoints/imitation") for a in argv
    ]
    assert main(["--game", "tictactoe", *argv, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_a_matches_file_of_another_game_is_refused(tmp_path, capsys):
    arena.play("tictactoe", ["random", "minimax"], games=2, out_dir=tmp_path, progress=False)
    assert main(["--game", "connect_four", "random", "mcts:5", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "a 'tictactoe' game, but this arena plays 'connect_four'" in capsys.readouterr().err
