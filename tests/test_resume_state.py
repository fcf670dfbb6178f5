"""A resume state cannot lie: everything read back is checked like a checkpoint (finite optimizer moments
of the right shapes, counters of the right types, replay rows), it names only files of its own run and
the checkpoint its history says it is; a learner never saves weights that are not finite; and a
checkpoint's gauntlet cut short by a kill is finished on resume. Each through `python -m selfplay.run`."""

import json
from pathlib import Path

import pytest
import torch
from tiny_runs import copy

import agents
from selfplay.arena.cli import load_matches
from selfplay.run import main

STATE = {"selfplay": "selfplay/state", "rl": "rl/state"}
MORE = {"selfplay": "selfplay.steps=18", "rl": "rl.steps=6"}


def run_of(stage: str, game_run: Path, text_run: Path, tmp_path: Path) -> Path:
    return copy(game_run if stage == "selfplay" else text_run, tmp_path / "run")


def resume(run: Path, *extra: str) -> int:
    return main(["--resume", str(run), *extra, "--no-progress"])


def steps(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").glob("step_*"))


def state_files(run: Path, stage: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run / STATE[stage]).iterdir()}


def edit_state(run: Path, stage: str, **fields) -> None:
    path = run / STATE[stage] / "state.json"
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


# --- what is read back is checked -------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["selfplay", "rl"])
def test_a_corrupt_optimizer_state_is_refused_naming_the_tensor(stage, game_run, text_run, tmp_path, capsys):
    run = run_of(stage, game_run, text_run, tmp_path)
    path = run / STATE[stage] / "optimizer.safetensors"
    data = bytearray(path.read_bytes())
    data[-500:-100] = b"\xff" * 400  # 0xff bytes read as NaN
    path.write_bytes(bytes(data))
    before, ckpts = state_files(run, stage), steps(run)
    assert resume(run, MORE[stage]) == 2
    err = capsys.readouterr().err
    assert f"{STATE[stage]}/optimizer.safetensors: non-finite values" in err and "Traceback" not in err
    assert steps(run) == ckpts and state_files(run, stage) == before  # nothing trained, nothing saved


@pytest.mark.parametrize(
    "stage, fields, named",
    [
        ("selfplay", {"version": "x"}, "version: Input should be a valid integer"),
        ("selfplay", {"elapsed": -1.0}, "elapsed"),
        ("selfplay", {"games": True}, "games"),
        ("selfplay", {"rng": [3, [1, 2], None]}, "rng"),
        ("selfplay", {"replay": [["b2", ["a1"], 0, None, float("nan"), 0.0, 0.0, 1]]}, "replay[0]: outcome"),
        ("selfplay", {"replay": [["b2", ["a1"], 5, None, 1.0, 0.0, 0.0, 1]]}, "replay[0]: chosen"),
        ("rl", {"collected": -3}, "collected"),
        ("rl", {"evals": [{"step": 0, "true_accuracy": float("inf")}]}, "evals"),
        ("rl", {"replay": [[[1, 2], [3], [0.0, -1.0], 0.5, 0]]}, "replay[0]: logprobs"),
        ("rl", {"verifier": "../elsewhere/verifier"}, "verifier"),
    ],
)
def test_every_field_of_a_resume_state_is_checked_before_use(
    stage, fields, named, game_run, text_run, tmp_path, capsys
):
    run = run_of(stage, game_run, text_run, tmp_path)
    edit_state(run, stage, **fields)
    ckpts = steps(run)
    assert resume(run, MORE[stage]) == 2
    err = capsys.readouterr().err
    assert f"{STATE[stage]}/state.json: " in err and named in err and "Traceback" not in err
    assert steps(run) == ckpts


# --- it names only its own run's files, and the checkpoint its history says --------------------------
@pytest.mark.parametrize(
    "fields, named",
    [
        (lambda other: {"checkpoint": str(other / "checkpoints/step_000012")}, "checkpoint: "),
        (lambda other: {"checkpoint": "../other/checkpoints/step_000012"}, "outside the run directory"),
        (
            lambda other: {
                "checkpoint": "../other/checkpoints/step_000012",
                "history": ["checkpoints/imitation", "../other/checkpoints/step_000012"],
            },
            "outside the run directory",
        ),
        (lambda other: {"checkpoint": "checkpoints/step_000006"}, "its history ends at"),
        (lambda other: {"step": 6}, "step: 6, but checkpoints/step_000012 is step 12"),
        (
            lambda other: {"history": ["checkpoints/imitation", "checkpoints/step_000012"]},
            "history[1]: 'checkpoints/step_000012' has parent 'checkpoints/step_000006'",
        ),
    ],
)
def test_a_resume_state_that_points_elsewhere_is_refused_naming_the_key(
    fields, named, game_run, tmp_path, capsys
):
    run, other = copy(game_run, tmp_path / "run"), copy(game_run, tmp_path / "other")
    edit_state(run, "selfplay", **fields(other))
    assert resume(run) == 2
    err = capsys.readouterr().err
    assert "selfplay/state/state.json: " in err and named in err
    assert steps(run) == steps(other)  # neither run trained on


# --- never a non-finite checkpoint ---------------------------------------------------------------------
def test_a_learner_whose_loss_is_not_finite_stops_naming_the_step_and_the_last_good_checkpoint(
    game_run, tmp_path, capsys
):
    run = copy(game_run, tmp_path / "run")
    assert resume(run, "selfplay.steps=18", "selfplay.lr=1.0e+38") == 1
    err = capsys.readouterr().err
    assert "selfplay: step 1" in err and "not finite" in err and "nothing was saved" in err
    assert "The last good checkpoint is checkpoints/step_000012 (step 12)" in err
    assert steps(run) == ["step_000006", "step_000012"]


def test_weights_that_are_not_finite_are_never_saved(game_run, tmp_path, capsys, monkeypatch):
    real = torch.optim.AdamW.step

    def poisoned(self, *args, **kwargs):  # as an overflow would leave them
        out = real(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned)
    run = copy(game_run, tmp_path / "run")
    assert resume(run, "selfplay.steps=18", "selfplay.checkpoint_every=1") == 1
    err = capsys.readouterr().err
    assert "selfplay: step 13: the weights are not finite (NaN or inf in " in err
    assert "checkpoints/step_000012 (step 12)" in err
    assert steps(run) == ["step_000006", "step_000012"]
    assert agents.load(run / "checkpoints/step_000012") is not None  # the last good one loads


# --- an evaluation cut short -----------------------------------------------------------------------
def test_a_gauntlet_cut_short_by_a_kill_is_finished_on_resume(game_run, tmp_path):
    run = copy(game_run, tmp_path / "run")
    matches = run / "arena/matches.jsonl"
    lines = matches.read_text().splitlines()
    mine = [k for k, line in enumerate(lines) if "checkpoints/step_000012" in line]
    # what a kill leaves while the last checkpoint plays its gauntlet (its resume state is already
    # written): the games played so far, and not the rest
    kept = [line for k, line in enumerate(lines) if k not in mine[3:]]
    matches.write_text("\n".join(kept) + "\n")
    assert resume(run) == 0
    records = load_matches(matches)
    assert sum("checkpoints/step_000012" in r["players"] for r in records) == len(mine)
    assert len(records) == len(lines)  # the missing games, each once
    row = next(x for x in (run / "arena/scores_by_step.md").read_text().splitlines() if x.startswith("| 12 "))
    assert "(4)" in row  # evaluation.games = 4 against random
