"""The play command, driven by scripted input through a pipe."""

import io
import subprocess
import sys
from pathlib import Path

import pytest

import agents
from selfplay.arena.play import main

ROOT = Path(__file__).resolve().parents[1]
EVERY_SQUARE = ["a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"]


def play(*args, script):
    return subprocess.run(
        [sys.executable, "-m", "selfplay.play", *args],
        input="\n".join(script) + "\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_whole_game_through_a_pipe_survives_bad_input():
    # Nonsense, an empty line, a request for the moves, then every square in turn: the ones already
    # taken are refused with the legal moves, the others played, until the game ends.
    done = play(
        "minimax", "--game", "tictactoe", "--seed", "0", script=["zz", "", "moves", *EVERY_SQUARE] * 2
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "you move first against minimax" in out
    assert "'zz' is not a move of this game; legal moves: a1, b1, c1, a2, b2, c2, a3, b3, c3" in out
    assert "legal moves: a1, b1, c1, a2, b2, c2, a3, b3, c3" in out
    assert "is not a legal move; legal moves:" in out  # a taken square
    assert "minimax plays" in out and "  a b c\n1 " in out  # the board, drawn as the game's text
    assert out.rstrip().endswith(("minimax wins.", "Draw."))  # perfect play never loses
    assert "Traceback" not in done.stderr


def test_end_of_input_and_quit_leave_cleanly():
    done = play("random", "--game", "connect_four", "--human-second", script=[])
    assert done.returncode == 0 and "end of input: game abandoned" in done.stdout
    assert "random plays" in done.stdout  # the baseline opened
    done = play("random", "--game", "othello", script=["quit"])
    assert done.returncode == 0 and "game abandoned" in done.stdout


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("play")
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=256)
    policy = agents.new_policy(cfg, device="cpu", seed=0, meta={"game": "tictactoe"})
    agents.save(policy, root / "ttt/checkpoints/imitation", meta={"stage": "imitation", "step": 1})
    return root


def test_a_checkpoint_knows_its_game(run):
    out = io.StringIO()
    script = io.StringIO("\n".join(EVERY_SQUARE) + "\n")
    assert main([str(run / "ttt"), "--human-second"], stdin=script, stdout=out) == 0
    text = out.getvalue()
    assert "tictactoe: you move second against" in text and "imitation plays" in text
    assert text.rstrip().endswith(("You win.", "wins.", "Draw."))
    out = io.StringIO()
    spec = str(run / "ttt/checkpoints/imitation@mcts:4")
    assert main([spec], stdin=io.StringIO("quit\n"), stdout=out) == 0
    assert "imitation@mcts:4" in out.getvalue()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["minimax"], "--game is needed"),
        (["nonsense", "--game", "tictactoe"], "unknown player 'nonsense'"),
        (["no/such/ckpt"], "no such checkpoint directory"),
        (["{ckpt}", "--game", "connect_four"], "plays 'tictactoe', not 'connect_four'"),
        (["random", "--game", "chess"], "unknown environment 'chess'"),
    ],
)
def test_bad_input_is_an_error_before_the_game(run, capsys, argv, message):
    argv = [a.format(ckpt=run / "ttt/checkpoints/imitation") for a in argv]
    assert main(argv, stdin=io.StringIO("a1\n"), stdout=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
