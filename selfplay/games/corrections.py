"""Correction rounds (DAgger) between imitation and self-play.

Imitation covers the teacher's positions; the policy then plays into others, where nobody showed it the
right move. A round fixes that the way the founding notes describe: the policy plays (itself, the teacher
or any player, `corrections.opponent`), the expert labels every position the policy reached with its own
move, the labelled games join the imitation data, and imitation continues from the round before on every
game so far (Ross, Gordon and Bagnell 2011, "A reduction of imitation learning and structured prediction
to no-regret online learning": DAgger). `corrections.rounds` rounds; the last checkpoint starts stage 2.

Files: `RUN/corrections/round_R.jsonl` (transcripts whose policy moves carry the expert's label,
`expert_action`), `RUN/checkpoints/corrections_R` and `RUN/corrections_R.json` (the round's imitation
summary plus what its games were). Each round is reused when this configuration made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

import agents
import envs
import selfplay.arena.players as players
import selfplay.core.rundir as rundir
from envs.experts import make_expert
from selfplay.config import Config, fingerprint, section_dump
from selfplay.core.training import each_round
from selfplay.core.transcripts import FORMAT, game_seed, load_transcripts
from selfplay.games.imitate import train
from selfplay.io import atomic_open, atomic_write_text


def round_hash(config: Config, r: int) -> str:
    """What round `r` depends on: imitation's inputs and the corrections section (not `rounds`: a run
    given more rounds keeps the ones it has)."""
    cc = section_dump(config.corrections, "corrections", exclude={"rounds", "share"})  # `share`: text only
    return fingerprint(config, {"game", "transcripts", "model", "imitation"}, corrections=cc, round=r)


def corrections_outputs(config: Config, run_dir: Path) -> list[rundir.Output]:
    """Each round's games and checkpoint, which may stay when this configuration made them."""
    out = []
    for r in range(1, config.corrections.rounds + 1):
        meta, want = _games_meta(run_dir, r), {"round_hash": round_hash(config, r)}
        made = lambda meta=meta, want=want: rundir.same_json(meta, want)  # noqa: E731
        out.append(rundir.Output(f"correction round {r}'s games", _games(run_dir, r), made))
        ckpt = run_dir / "checkpoints" / f"corrections_{r}"
        out.append(rundir.made_output(f"correction round {r}'s checkpoint", ckpt, round_hash(config, r)))
    return out


def corrections_stage(
    config: Config, run_dir: Path, data: Path, imitation: Path, *, progress: bool = True
) -> Path:
    """`corrections.rounds` rounds from the imitation checkpoint; returns the last round's checkpoint
    (`imitation` itself with no rounds)."""
    make = lambda current, r: _round(config, run_dir, data, current, r, progress=progress)  # noqa: E731
    return each_round(config, run_dir, imitation, make, round_hash)


def _round(config: Config, run_dir: Path, data: Path, current: Path, r: int, *, progress: bool) -> Path:
    cc = config.corrections
    games = _games(run_dir, r)
    want = {"round_hash": round_hash(config, r)}
    if not (games.exists() and rundir.same_json(_games_meta(run_dir, r), want)):
        policy = agents.load(current, device=config.imitation.device)
        records = play_and_label(policy, config, seed=game_seed(cc.seed, r), label=f"round {r}")
        atomic_write_text(_games_meta(run_dir, r), json.dumps(want) + "\n")  # first: a kill leaves no stray
        with atomic_open(games) as f:
            f.writelines(json.dumps(rec) + "\n" for rec in records)
    played = describe_games(games, config.game)
    score = "" if played["policy_score"] is None else f", policy score {played['policy_score']:.2f}"
    print(
        f"corrections {r}: {played['games']} games of {current.name}{score}; {played['labels']} positions "
        f"labelled, the policy's move the expert's in {played['agreement']:.2f}"
    )
    steps = {"max_steps": cc.steps, "max_minutes": None}
    round_config = config.model_copy(update={"imitation": config.imitation.model_copy(update=steps)})
    meta = {"stage": "corrections", "round": r, "parent": rundir.rel(current, run_dir)}
    meta["config_hash"] = round_hash(config, r)
    more = [_games(run_dir, k) for k in range(1, r + 1)]
    name = f"corrections_{r}"
    ckpt = train(
        round_config, data, run_dir, progress=progress, start=current, more=more, name=name, meta=meta
    )
    summary_path = run_dir / f"{name}.json"
    summary = {**rundir.read_json(summary_path), "round": r, "played": played}
    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    return ckpt


def _games(run_dir: Path, r: int) -> Path:
    return run_dir / "corrections" / f"round_{r}.jsonl"


def _games_meta(run_dir: Path, r: int) -> Path:
    return run_dir / "corrections" / f"round_{r}.meta.json"


def play_and_label(
    policy: agents.Policy, config: Config, *, seed: int, label: str = ""
) -> list[dict[str, Any]]:
    """`corrections.games` games of the policy against `corrections.opponent` (colours alternating, the
    first `opening_plies` moves random), every position the policy moved in labelled with the expert's
    own move (its epsilon off); as transcript records."""
    cc, game = config.corrections, envs.make(config.game)
    expert_spec = cc.expert or config.transcripts.expert
    opponent = None if cc.opponent == "self" else players.make(cc.opponent, game, seed=seed)
    rng = np.random.default_rng([seed, 1])
    tables = []
    for i in range(cc.games):
        g_seed = game_seed(seed, i)
        expert = make_expert(expert_spec, game, seed=g_seed)
        expert.epsilon = 0.0  # the label is the expert's own choice
        tables.append(
            {
                "state": game.new_initial_state(),
                "moves": [],
                "seat": i % 2,  # the policy's colour against an opponent
                "expert": expert,
                "opponent": opponent.for_game(g_seed) if opponent is not None else None,
                "rng": np.random.default_rng([seed, 2, i]),
            }
        )
    active = list(tables)
    while active:
        for t in active:  # openings and the opponent's moves, a game at a time
            s = t["state"]
            while not s.is_terminal() and not _policy_to_move(t, cc.opening_plies):
                if s.move_number() < cc.opening_plies:
                    action = int(t["rng"].choice(s.legal_actions()))
                else:
                    action = t["opponent"].act([s])[0]
                _record(t, action, explored=True)
        todo = [t for t in active if not t["state"].is_terminal()]
        if todo:  # the policy's moves: one batch over every game waiting for it
            actions = policy.act([t["state"] for t in todo], temperature=cc.temperature, rng=rng)
            for t, action in zip(todo, actions, strict=True):
                decision = t["expert"].decide(t["state"])
                _record(t, action, explored=True, expert_action=decision.action)
        active = [t for t in active if not t["state"].is_terminal()]
    against = "itself" if opponent is None else opponent.name
    return [
        _transcript(game, t, f"corrections {label}: {against}, labelled by {expert_spec}") for t in tables
    ]


def describe_games(path: Path, game: str) -> dict[str, Any]:
    """A round's games in numbers: how many, positions labelled, how often the policy's move was the
    expert's, and the policy's score (win 1, draw 1/2) where it had an opponent."""
    transcripts = load_transcripts(path, game=game)
    labelled = [m for t in transcripts for m in t.moves if m.expert_action is not None]
    scores = []
    for t in transcripts:
        seats = {m.player for m in t.moves if m.expert_action is not None}
        if len(seats) == 1:  # one policy seat: a game against an opponent
            scores.append((t.returns[seats.pop()] + 1) / 2)
    return {
        "games": len(transcripts),
        "labels": len(labelled),
        "agreement": float(np.mean([m.action == m.expert_action for m in labelled])) if labelled else 0.0,
        "policy_score": float(np.mean(scores)) if scores else None,
    }


def _policy_to_move(t: dict, opening_plies: int) -> bool:
    s = t["state"]
    if s.move_number() < opening_plies:
        return False
    return t["opponent"] is None or s.current_player() == t["seat"]


def _record(t: dict, action: int, *, explored: bool, expert_action: int | None = None) -> None:
    s = t["state"]
    move = {"player": s.current_player(), "prompt": s.prompt(), "action": int(action)}
    move.update(text=s.action_to_text(action), explored=explored)
    if expert_action is not None:
        move["expert_action"] = int(expert_action)
    t["moves"].append(move)
    s.apply_action(action)


def _transcript(game: envs.Game, t: dict, expert: str) -> dict[str, Any]:
    returns = [float(x) for x in t["state"].returns()]
    winner = returns.index(max(returns)) if max(returns) > min(returns) else None
    return {
        "format": FORMAT,
        "game": game.name,
        "game_options": game.options,
        "expert": expert,
        "moves": t["moves"],
        "returns": returns,
        "winner": winner,
    }
