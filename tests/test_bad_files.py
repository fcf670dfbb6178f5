"""Bad data files, through the interface a user touches: each is a named error naming FILE:LINE (exit
code 2 from a command), raised before any work, never a traceback."""

import json
from pathlib import Path

import pytest
from tiny_runs import copy

import envs
import selfplay.arena.cli as arena
import selfplay.arena.play as play
import selfplay.games.imitate as imitate
import selfplay.text.verifier as verifier
from selfplay import run
from selfplay.core.transcripts import TextTranscriptError, expert_transcripts, generate, load_text_transcripts

ROOT = Path(__file__).resolve().parents[1]
DEEP = "[" * 100000 + "]" * 100000
MATCH = {
    "format": "selfplay.match/1",
    "game": "tictactoe",
    "players": ["random", "minimax"],
    "pair": ["minimax", "random"],
    "index": 0,
    "seed": 0,
    "opening_plies": 1,
    "moves": ["a1", "b2", "c3", "a3", "a2", "c1"],
    "returns": [-1.0, 1.0],
    "winner": 1,
    "score": 0.0,
}


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    """Lines of two real tic-tac-toe transcripts."""
    path = tmp_path_factory.mktemp("games") / "ttt.jsonl"
    generate("tictactoe", "minimax", 2, path, seed=0, workers=1, progress=False)
    return path.read_text().splitlines()


def good_line(kind, games):
    return {
        "transcripts": lambda: games[0],
        "text transcripts": lambda: json.dumps(expert_transcripts(envs.make("arithmetic"), 1, seed=0)[0]),
        "labelled": lambda: json.dumps({"prompt": "2+3=", "completion": "5", "label": 1.0}),
        "comparisons": lambda: json.dumps({"prompt": "2+3=", "chosen": "5", "rejected": "6"}),
        "matches": lambda: json.dumps(MATCH),
    }[kind]()


def error_of(kind, path, tmp_path, capsys):
    """What the user reads when `path` is given as a file of `kind`."""
    if kind == "text transcripts":
        with pytest.raises(TextTranscriptError) as e:
            load_text_transcripts(path)
        return str(e.value)
    if kind == "transcripts":
        config = str(ROOT / "configs/tictactoe.yaml")
        overrides = [f"run_dir={tmp_path / 'run'}", "model.size=nano", "imitation.max_steps=2"]
        rc = run.main([config, f"transcripts.path={path}", *overrides, "selfplay.algorithm=none"])
    elif kind in ("labelled", "comparisons"):
        flag = "--data" if kind == "labelled" else "--pairs"
        rc = verifier.main(["train", flag, str(path), "--out", str(tmp_path / "v"), "--no-progress"])
    else:
        assert path.name == arena.MATCHES
        argv = ["random", "minimax", "--game", "tictactoe", "--games", "2", "--bootstrap", "10"]
        rc = arena.main([*argv, "--workers", "1", "--out", str(path.parent), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "Traceback" not in err
    return err


KINDS = ["transcripts", "text transcripts", "labelled", "comparisons", "matches"]


def write(tmp_path, lines: list[bytes]) -> Path:
    path = tmp_path / arena.MATCHES  # the name the arena reads; any name for the others
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


@pytest.mark.parametrize("kind", KINDS)
def test_a_line_that_is_not_utf8_is_named(kind, games, tmp_path, capsys):
    path = write(tmp_path, [good_line(kind, games).encode(), b'{"prompt": "\xff\xfe"}'])
    err = error_of(kind, path, tmp_path, capsys)
    assert f"{path}:2: " in err and "not UTF-8 text" in err


@pytest.mark.parametrize("kind", KINDS)
def test_a_deeply_nested_line_is_named(kind, games, tmp_path, capsys):
    path = write(tmp_path, [good_line(kind, games).encode(), DEEP.encode()])
    err = error_of(kind, path, tmp_path, capsys)
    assert f"{path}:2: " in err and "nested too deeply" in err


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"players": None}, "'players' must be a list of two player names, got None"),
        ({"score": None}, "'score' (the first mover's) must be 0, 0.5 or 1, got None"),
        ({"score": 2}, "must be 0, 0.5 or 1, got 2"),
        ({"score": "1"}, "must be 0, 0.5 or 1, got '1'"),
        ({"players": "random,minimax"}, "'players' must be a list of two player names, got 'random,minimax'"),
        ({"players": ["random", 3]}, "'players' must be a list of two player names"),
        (
            {"players": ["random", "random"], "pair": ["random", "random"]},
            "cannot play itself ('random' twice)",
        ),
        ({"pair": ["random", "minimax"]}, "'pair' must be the two players sorted"),
    ],
    ids=[
        "missing players",
        "missing score",
        "score 2",
        "score not a number",
        "players a string",
        "a name a number",
        "a player against itself",
        "pair not the players",
    ],
)
def test_a_bad_match_record_is_named_before_any_game(change, complaint, tmp_path, capsys):
    record = {k: v for k, v in {**MATCH, "index": 1, **change}.items() if v is not None}  # not line 1 again
    path = write(tmp_path, [json.dumps(MATCH).encode(), json.dumps(record).encode()])
    before = path.read_bytes()
    err = error_of("matches", path, tmp_path, capsys)
    assert f"{path}:2: not a match record: " in err and complaint in err
    assert path.read_bytes() == before  # no game played
    with pytest.raises(arena.MatchesError, match=":2: not a match record"):
        arena.load_matches(path)


@pytest.mark.parametrize(
    ("command", "players"),
    [(play.main, ["random"]), (arena.main, ["random", "minimax"])],
    ids=["play", "arena"],
)
def test_a_reward_environment_is_refused_by_the_commands_that_play_games(
    command, players, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert command([*players, "--game", "arithmetic"]) == 2
    err = capsys.readouterr().err
    assert "'arithmetic' is a reward environment" in err and "tictactoe" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_imitation_needs_two_games_one_held_out(games, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"game: tictactoe\nrun_dir: {tmp_path / 'run'}\ntranscripts:\n  expert: minimax\n")
    tiny = ["model.size=nano", "model.block_size=64", "imitation.max_steps=2", "imitation.device=cpu"]
    data = tmp_path / "games.jsonl"
    data.write_text(games[0] + "\n")
    assert imitate.main([str(config), f"transcripts.path={data}", *tiny, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{data}: 1 game; imitation needs at least 2 (one to train on, one held out)" in err
    assert not (tmp_path / "run/checkpoints").exists()
    data.write_text(games[0] + "\n" + games[1] + "\n")
    assert imitate.main([str(config), f"transcripts.path={data}", *tiny, "--no-progress"]) == 0
    assert (tmp_path / "run/checkpoints/imitation").is_dir()


# --- the files of a run directory ----------------------------------------------------------------------
NESTED = ["config.yaml", "checkpoints/step_000012/meta.json", "checkpoints/step_000012/config.json"]
NESTED += ["transcripts.meta.json", "imitation.json"]


@pytest.mark.parametrize("name", ["a new config", *NESTED])
def test_a_deeply_nested_file_of_a_run_is_named_not_a_traceback(name, game_run, tmp_path, capsys):
    """Every JSON and YAML file selfplay reads goes through one reader (envs.files): nesting 2,000 levels
    deep is a named error, whichever file it is."""
    deep = "[" * 2000 + "]" * 2000
    if name == "a new config":
        path = tmp_path / "deep.yaml"
        path.write_text("game: tictactoe\nselfplay: " + deep + "\n")
        argv = [str(path), f"run_dir={tmp_path / 'new'}"]
    else:
        run_dir = copy(game_run, tmp_path / "run")
        path = run_dir / name
        path.write_text(("x: " if name.endswith(".yaml") else "") + deep + "\n")
        argv = ["--resume", str(run_dir), "selfplay.steps=18"]
    assert run.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err and "nested too deeply" in err and "Traceback" not in err
