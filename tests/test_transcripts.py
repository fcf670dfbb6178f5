import json

import pytest

from selfplay.core.transcripts import TranscriptError, game_seed, generate, load_transcripts, main, play_game


@pytest.fixture(scope="module")
def ttt_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("t") / "ttt.jsonl"
    summary = generate("tictactoe", "minimax:epsilon=0.2", 60, out, seed=3, workers=2, progress=False)
    assert summary.games == 60 and sum(summary.wins) + summary.draws == 60
    return out


def test_schema_of_a_line(ttt_file):
    record = json.loads(ttt_file.read_text().splitlines()[0])
    assert record["format"] == "selfplay.transcript/1"
    assert record["game"] == "tictactoe" and record["expert"] == "minimax"
    assert record["expert_options"] == {"epsilon": 0.2}
    assert record["seed"] == game_seed(3, 0)
    move = record["moves"][0]
    assert set(move) == {"player", "prompt", "action", "text", "explored"}
    assert move["prompt"].startswith("tictactoe\n") and move["prompt"].endswith("X to move\n")
    assert len(record["returns"]) == 2 and record["winner"] in (0, 1, None)


def test_loader_replays_every_game(ttt_file):
    games = load_transcripts(ttt_file, game="tictactoe")
    assert len(games) == 60
    assert any(m.explored for g in games for m in g.moves)  # epsilon moves are marked
    assert len({tuple(m.action for m in g.moves) for g in games}) > 30


def test_output_does_not_depend_on_worker_count(ttt_file, tmp_path):
    again = tmp_path / "again.jsonl"
    generate("tictactoe", "minimax:epsilon=0.2", 60, again, seed=3, workers=1, progress=False)
    assert again.read_bytes() == ttt_file.read_bytes()
    other = tmp_path / "other.jsonl"
    generate("tictactoe", "minimax:epsilon=0.2", 60, other, seed=4, workers=1, progress=False)
    assert other.read_bytes() != ttt_file.read_bytes()


def test_a_game_is_reproducible_from_its_recorded_seed(ttt_file):
    import envs
    from envs.experts import make_expert

    record = json.loads(ttt_file.read_text().splitlines()[7])
    game = envs.make("tictactoe")
    replay = play_game(game, make_expert("minimax:epsilon=0.2", game), record["seed"])
    assert replay == record


def test_opening_plies_are_random_and_marked(tmp_path):
    out = tmp_path / "open.jsonl"
    generate("tictactoe", "minimax", 20, out, opening_plies=2, workers=1, progress=False)
    for g in load_transcripts(out):
        assert [m.explored for m in g.moves[:3]] == [True, True, False]


def _corrupt(tmp_path, ttt_file, lineno, edit):
    lines = ttt_file.read_text().splitlines()
    lines[lineno - 1] = edit(lines[lineno - 1])
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    return bad


def _edit_record(fn):
    def edit(line):
        record = json.loads(line)
        fn(record)
        return json.dumps(record)

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda line: line[:-5], r"not valid JSON"),
        (lambda line: "[1, 2]", r"Input should be a valid dictionary"),
        (_edit_record(lambda r: r.pop("moves")), r"moves: Field required"),
        (_edit_record(lambda r: r.update(surprise=1)), r"surprise: Extra inputs are not permitted"),
        (_edit_record(lambda r: r.update(game="chess")), r"unknown environment 'chess'"),
        (_edit_record(lambda r: r["moves"][1].update(text="z9")), r"move 2: .*'z9' is not a move"),
        (
            _edit_record(lambda r: r["moves"][1].update(text=r["moves"][0]["text"])),
            r"move 2: .*not a legal move",
        ),
        (_edit_record(lambda r: r["moves"][1].update(prompt="?")), r"move 2: prompt does not match"),
        (
            _edit_record(lambda r: r["moves"][0].update(action=(r["moves"][0]["action"] + 1) % 9)),
            r"move 1: text",
        ),
        (_edit_record(lambda r: r["moves"].pop()), r"not finished"),
        (_edit_record(lambda r: r.update(returns=[0.5, -0.5])), r"returns"),
        (_edit_record(lambda r: r["moves"][0].update(player=1)), r"player 1 moved"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, ttt_file, edit, message):
    bad = _corrupt(tmp_path, ttt_file, 5, edit)
    with pytest.raises(TranscriptError, match=rf"bad\.jsonl:5: .*{message}"):
        load_transcripts(bad)


def test_wrong_game_empty_and_missing_files(tmp_path, ttt_file):
    with pytest.raises(
        TranscriptError, match=r"ttt\.jsonl:1: transcript is for game 'tictactoe', expected 'othello'"
    ):
        load_transcripts(ttt_file, game="othello")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TranscriptError, match=r"empty\.jsonl: the file holds no transcripts"):
        load_transcripts(empty)
    with pytest.raises(TranscriptError, match=r"nope\.jsonl: no such transcript file"):
        load_transcripts(tmp_path / "nope.jsonl")


def test_cli_writes_file_and_reports(tmp_path, capsys):
    out = tmp_path / "c4.jsonl"
    argv = ["--game", "connect_four", "--expert", "alphabeta:depth=2", "--games", "4", "--out", str(out)]
    assert main([*argv, "--workers", "2", "--no-progress", "--opening-plies", "2"]) == 0
    assert "4 games" in capsys.readouterr().out
    games = load_transcripts(out, game="connect_four")
    assert [g.expert_options for g in games] == [{"epsilon": 0.0, "depth": 2}] * 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--game", "chess", "--expert", "random"], "unknown environment 'chess'"),
        (["--game", "tictactoe", "--expert", "alphabeta:4"], "does not play 'tictactoe'"),
        (["--game", "tictactoe", "--expert", "minimax:depth=2"], "no option 'depth'"),
    ],
)
def test_cli_bad_input_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "x.jsonl"
    assert main([*args, "--games", "3", "--out", str(out), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_atomic_write_leaves_nothing_behind_on_error(tmp_path):
    import os

    from selfplay.io import atomic_open, atomic_write_text

    target = tmp_path / "f.txt"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_open(target) as f:
        f.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
