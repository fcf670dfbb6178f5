"""What a run directory promises: nothing in it is overwritten (a command refuses before it writes), nothing
in it is unpickled, it resumes from its own files wherever it is moved or copied, and what a kill leaves
behind is cleared."""

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import ARITHMETIC, TEXT, TINY, TTT, copy, files_of

import agents
import selfplay.arena.cli as arena
import selfplay.arena.play as play
import selfplay.games.imitate as imitate
from selfplay.run import main

ROOT = Path(__file__).resolve().parents[1]


# --- refusal before overwrite ------------------------------------------------------------------------
def test_another_config_over_a_selfplay_run_writes_nothing(game_run, tmp_path, capsys):
    run = copy(game_run, tmp_path / "run")
    before = files_of(run)
    assert main(["--no-progress", TTT, f"run_dir={run}", *TINY, "imitation.max_steps=31"]) == 2
    err = capsys.readouterr().err
    assert "an imitation checkpoint" in err and "a self-play run" in err and "nothing was written" in err
    assert files_of(run) == before


def test_the_same_config_again_over_a_selfplay_run_writes_nothing(game_run, tmp_path, capsys):
    run = copy(game_run, tmp_path / "run")
    before = files_of(run)
    assert main(["--no-progress", TTT, f"run_dir={run}", *TINY]) == 2
    assert f"--resume {run}" in capsys.readouterr().err
    assert files_of(run) == before  # not even config.yaml rewritten


def test_imitation_alone_over_a_selfplay_run_writes_nothing(game_run, tmp_path, capsys):
    run = copy(game_run, tmp_path / "run")
    before = files_of(run)
    assert imitate.main(["--no-progress", TTT, f"run_dir={run}", *TINY, "imitation.lr=0.001"]) == 2
    assert "an imitation checkpoint" in capsys.readouterr().err
    assert files_of(run) == before


def test_imitation_alone_over_an_rl_run_calls_it_one(text_run, tmp_path, capsys):
    run = copy(text_run, tmp_path / "run")
    before = files_of(run)
    assert imitate.main(["--no-progress", ARITHMETIC, f"run_dir={run}", *TEXT, "imitation.lr=0.001"]) == 2
    err = capsys.readouterr().err
    assert "an RL run's checkpoints/step_000004" in err and "self-play" not in err
    assert files_of(run) == before


def test_a_refusal_leaves_the_lock_file_as_the_last_run_left_it(game_run, tmp_path, capsys):
    run = copy(game_run, tmp_path / "run")
    lock = run / ".lock"
    lock.write_text("pid 4242\n")
    was = (lock.read_bytes(), lock.stat().st_mtime_ns)
    assert main(["--no-progress", TTT, f"run_dir={run}", *TINY, "imitation.max_steps=31"]) == 2
    assert "nothing was written" in capsys.readouterr().err
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == was


def test_the_text_pipeline_over_an_rl_run_writes_nothing(text_run, tmp_path, capsys):
    run = copy(text_run, tmp_path / "run")
    before = files_of(run)
    argv = [
        "--no-progress",
        str(ROOT / "configs/arithmetic.yaml"),
        f"run_dir={run}",
        *TEXT,
        "verifier.steps=5",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "a verifier" in err and "an RL run" in err and "an imitation checkpoint" not in err
    assert files_of(run) == before


def test_a_directory_that_is_no_run_directory_is_left_alone(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["--no-progress", TTT, f"run_dir={tmp_path}", *TINY]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_run_directory_in_use_by_another_process_is_refused(game_run, tmp_path, capsys):
    run = copy(game_run, tmp_path / "run")
    hold = "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
    hold += "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(run / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = files_of(run)
        assert main(["--resume", str(run), "selfplay.steps=18", "--no-progress"]) == 2
        assert "is in use" in capsys.readouterr().err
        assert files_of(run) == before
    finally:
        holder.kill()
        holder.wait()


# --- nothing unpickled -------------------------------------------------------------------------------
class _Payload:
    """What a crafted pickle does when loaded: here, leave a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"checkpoint": _Payload(marker), "step": 1}, path)


def test_a_pickled_selfplay_state_is_never_loaded_on_resume(game_run, tmp_path, capsys):
    run, marker = copy(game_run, tmp_path / "run"), tmp_path / "pwned"
    shutil.rmtree(run / "selfplay/state", ignore_errors=True)  # (an older selfplay wrote state.pt)
    _plant(run / "selfplay/state.pt", marker)
    assert main(["--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "selfplay/state.pt" in err and "pickle" in err
    assert not marker.exists()


def test_a_pickled_rl_state_is_never_loaded_on_resume(text_run, tmp_path, capsys):
    run, marker = copy(text_run, tmp_path / "run"), tmp_path / "pwned"
    shutil.rmtree(run / "rl/state", ignore_errors=True)
    _plant(run / "rl/state.pt", marker)
    assert main(["--resume", str(run), "--no-progress"]) == 2
    assert "rl/state.pt" in capsys.readouterr().err
    assert not marker.exists()


def test_a_pickled_state_is_never_read_for_the_report(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    argv = ["--no-progress", TTT, f"run_dir={run}", *TINY, "selfplay.algorithm=none"]
    assert main(argv) == 0  # imitation only; the report is written at the end
    _plant(run / "selfplay/state.pt", marker)
    assert main(argv) == 2
    assert "selfplay/state.pt" in capsys.readouterr().err
    assert not marker.exists()


def test_the_resume_state_is_json_and_tensors(game_run):
    state = game_run / "selfplay/state"
    assert sorted(p.name for p in state.iterdir()) == ["optimizer.safetensors", "state.json"]
    data = json.loads((state / "state.json").read_text())
    assert data["format"] == "selfplay.state/1" and data["checkpoint"] == "checkpoints/step_000012"
    assert data["history"] == [f"checkpoints/{n}" for n in ("imitation", "step_000006", "step_000012")]


@pytest.mark.parametrize(
    "text", ['{"format": "selfplay.state/1", "step": 3}', '{"format": "pickle"}', "[[[", "\u00ff"]
)
def test_a_resume_state_that_is_not_ours_is_refused_naming_the_file(game_run, tmp_path, capsys, text):
    run = copy(game_run, tmp_path / "run")
    (run / "selfplay/state/state.json").write_text(text, encoding="latin-1")
    assert main(["--resume", str(run), "--no-progress"]) == 2
    assert "selfplay/state/state.json" in capsys.readouterr().err


# --- relocatable ---------------------------------------------------------------------------------------
def _paths_outside(run: Path, elsewhere: Path) -> list[str]:
    """Every mention of `elsewhere` in the run directory's text files."""
    hits = []
    for p in run.rglob("*"):
        if (
            p.is_file()
            and p.suffix in (".json", ".jsonl", ".md", ".yaml")
            and str(elsewhere) in p.read_text()
        ):
            hits.append(str(p.relative_to(run)))
    return hits


def test_a_moved_run_resumes_from_its_own_files(game_run, tmp_path, capsys):
    first = copy(game_run, tmp_path / "first")
    moved = tmp_path / "moved"
    first.rename(moved)
    assert main(["--resume", str(moved), "selfplay.steps=18", "--no-progress"]) == 0
    assert "resuming at step 12" in capsys.readouterr().out
    meta = agents.read_meta(moved / "checkpoints/step_000018")
    assert meta["parent"] == "checkpoints/step_000012"
    pool = json.loads((moved / "selfplay/pool.json").read_text())["opponents"]
    assert {e["path"] for e in pool} >= {"checkpoints/step_000012", "checkpoints/step_000018"}
    assert _paths_outside(moved, first) == [] and _paths_outside(moved, game_run) == []


def test_a_copied_run_resumes_from_its_own_files_and_leaves_the_original_alone(game_run, tmp_path):
    original = copy(game_run, tmp_path / "original")
    before = files_of(original)
    twin = copy(original, tmp_path / "twin")
    assert main(["--resume", str(twin), "selfplay.steps=18", "--no-progress"]) == 0
    assert files_of(original) == before
    assert agents.read_meta(twin / "checkpoints/step_000018")["parent"] == "checkpoints/step_000012"
    assert _paths_outside(twin, original) == []


def test_a_moved_run_evaluates_and_plays_from_its_own_files(game_run, tmp_path, capsys, monkeypatch):
    moved = copy(game_run, tmp_path / "moved")
    trained = {n for r in arena.load_matches(moved / "arena/matches.jsonl") for n in r["players"]}
    assert "checkpoints/step_000012" in trained  # training named its checkpoints relative to the run
    monkeypatch.chdir(tmp_path)
    assert arena.main(["--game", "tictactoe", "moved", "random", "--games", "2", "--no-progress"]) == 0
    names = {n for r in arena.load_matches(moved / "arena/matches.jsonl") for n in r["players"]}
    assert names == trained  # the same players, not a second name for each checkpoint
    out = io.StringIO()
    assert play.main(["moved", "--human-second"], stdin=io.StringIO("quit\n"), stdout=out) == 0
    assert "step_000012 plays" in out.getvalue()  # its latest checkpoint moved first


# --- what kills leave behind --------------------------------------------------------------------------
def test_temporary_files_of_a_killed_transcript_generation_are_cleared(tmp_path):
    run = tmp_path / "run"
    argv = [
        "--no-progress",
        TTT,
        f"run_dir={run}",
        *TINY,
        "transcripts.games=200000",
        "transcripts.workers=1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "selfplay.run", *argv], env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(run.glob(".transcripts.jsonl.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(run.glob(".transcripts.jsonl.*.tmp")), "the generation was not caught in the act"
    assert main(["--no-progress", TTT, f"run_dir={run}", *TINY, "selfplay.algorithm=none"]) == 0
    assert not list(run.rglob("*.tmp"))


def test_a_checkpoint_moved_aside_by_a_kill_is_put_back(game_run, tmp_path):
    run = copy(game_run, tmp_path / "run")
    (run / "checkpoints/step_000012").rename(run / "checkpoints/.step_000012.old")  # killed mid-replace
    assert main(["--resume", str(run), "selfplay.steps=18", "--no-progress"]) == 0
    assert agents.read_meta(run / "checkpoints/step_000012")["step"] == 12
    assert not list(run.rglob(".*.old"))


def test_stats_counters_go_on_after_a_resume(game_run, tmp_path):
    run = copy(game_run, tmp_path / "run")
    before = json.loads((run / "selfplay/stats.json").read_text())
    assert before["trajectories"] == before["games"] > 0
    assert main(["--resume", str(run), "selfplay.steps=18", "--no-progress"]) == 0
    after = json.loads((run / "selfplay/stats.json").read_text())
    assert after["step"] == 18 and after["games"] > before["games"]
    assert after["trajectories"] == after["games"]  # counted over both runs, not since the resume
