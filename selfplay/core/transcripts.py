"""Expert transcripts, the data of imitation: games, and reward-environment episodes, as JSONL.

Games (`FORMAT`), one game a line:

Generate:

    python -m selfplay.transcripts --game connect_four --expert alphabeta:depth=4 \
        --games 2000 --out games.jsonl

Load (every line validated by replaying it through the rules):

    >>> from selfplay.core.transcripts import load_transcripts
    >>> games = load_transcripts("games.jsonl", game="connect_four")  # doctest: +SKIP

The schema (`FORMAT` = "selfplay.transcript/1") is documented in docs/file-formats.md.

Episodes of a reward environment (`TEXT_FORMAT` = "selfplay.text/1"), one episode a line, by its exact
expert or one of its teachers with systematic errors:

    python -m selfplay.transcripts --game arithmetic --options '{"digits": 2, "ops": "+"}' \
        --expert no_carry --games 20000 --out no_carry.jsonl

    records = expert_transcripts(envs.make("sort"), 1000, seed=0)   # list of dicts
    Path("sort.jsonl").write_text("".join(json.dumps(r) + "\\n" for r in records))
    records = load_text_transcripts("sort.jsonl", env="sort")       # validated; errors name FILE:LINE

A record is `{"format", "env", "options", "task": {"id", "prompt", "data"}, "turns": [{"prompt",
"completion"}, ...], "score"}`, and `"teacher"` when a teacher other than the exact expert wrote it: the
policy reads each turn's `prompt` and writes its `completion` (then the first stop string); `score` is
the env's score of the episode (a teacher's wrong answers score below 1).

`selfplay.core.transcript_stage` gives a run its data from these (the user's file, checked, or generated
once).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tqdm import tqdm

import envs
from envs.experts import ExpertSpecError, make_expert
from envs.files import iter_jsonl
from envs.reward import run_episode, sample_tasks
from selfplay.io import atomic_open, atomic_write_text

FORMAT = "selfplay.transcript/1"


class Move(BaseModel):
    """One move: the prompt the mover saw, the action chosen, and its text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    player: int = Field(ge=0, description="The player who moved.")
    prompt: str = Field(description="`state.prompt()` before the move: what the policy reads.")
    action: int = Field(ge=0, description="The action id (OpenSpiel-style integer).")
    text: str = Field(min_length=1, description="`state.action_to_text(action)`: what the policy writes.")
    explored: bool = Field(
        default=False,
        description="True for a move that is not the expert's choice (random, an opponent's, the policy's).",
    )
    expert_action: int | None = Field(
        default=None,
        ge=0,
        description="A correction (`selfplay.games.corrections`): the expert's action here, where the policy "
        "played `action`; imitation learns it instead of the move played.",
    )


class Transcript(BaseModel):
    """One finished game."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["selfplay.transcript/1"] = FORMAT
    game: str = Field(description="Registered game name, as for `envs.make`.")
    game_options: dict[str, Any] = Field(default_factory=dict)
    expert: str = Field(description="Expert name (or any label for transcripts from elsewhere).")
    expert_options: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(default=None, description="Seed that reproduces this game alone.")
    moves: list[Move] = Field(min_length=1)
    returns: list[float] = Field(description="Final return per player.")
    winner: int | None = Field(description="Winning player, or null for a draw.")


class TranscriptError(ValueError):
    """A malformed transcript file; the message names the file and line."""


# --- loading -------------------------------------------------------------------------------------
def _check_replay(t: Transcript, game: envs.Game) -> None:
    """Replay `t` through the rules: every prompt, move and the outcome must agree."""
    state = game.new_initial_state()
    for i, m in enumerate(t.moves, 1):
        if state.is_terminal():
            raise ValueError(f"move {i} ({m.text!r}) comes after the end of the game")
        if m.player != state.current_player():
            raise ValueError(
                f"move {i}: player {m.player} moved but it was player {state.current_player()}'s turn"
            )
        if m.prompt != state.prompt():
            raise ValueError(f"move {i}: prompt does not match the position reached by the moves before it")
        try:
            action = state.text_to_action(m.text)
        except envs.IllegalMoveError as e:
            raise ValueError(f"move {i}: {e}") from None
        if action != m.action:
            raise ValueError(f"move {i}: text {m.text!r} is action {action}, but the line says {m.action}")
        if m.expert_action is not None and m.expert_action not in state.legal_actions():
            raise ValueError(f"move {i}: expert_action {m.expert_action} is not a legal move there")
        state.apply_action(action)
    if not state.is_terminal():
        raise ValueError(f"the game is not finished after its {len(t.moves)} moves")
    if [float(r) for r in state.returns()] != t.returns:
        raise ValueError(f"returns {t.returns} do not match the final position's {state.returns()}")
    if t.winner != _winner(state.returns()):
        raise ValueError(f"winner {t.winner} does not match the final position's {_winner(state.returns())}")


def iter_transcripts(path: str | os.PathLike, *, game: str | None = None) -> Iterator[Transcript]:
    """Yield validated games from a JSONL file; `TranscriptError` names FILE:LINE of the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise TranscriptError(f"{path}: no such transcript file")
    games: dict[tuple[str, str], envs.Game] = {}
    count = 0
    for where, obj in iter_jsonl(path, TranscriptError):
        try:
            t = Transcript.model_validate(obj)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'line'}: {err['msg']}" for err in e.errors()[:3]
            )
            raise TranscriptError(f"{where}: {problems}") from None
        if game is not None and t.game != game:
            raise TranscriptError(f"{where}: transcript is for game {t.game!r}, expected {game!r}")
        key = (t.game, json.dumps(t.game_options, sort_keys=True))
        try:
            if key not in games:
                games[key] = envs.make(t.game, **t.game_options)
            _check_replay(t, games[key])
        except (envs.UnknownEnvError, TypeError, ValueError) as e:
            raise TranscriptError(f"{where}: {e}") from None
        count += 1
        yield t
    if count == 0:
        raise TranscriptError(f"{path}: the file holds no transcripts")


def load_transcripts(path: str | os.PathLike, *, game: str | None = None) -> list[Transcript]:
    """All games of a JSONL file, validated (see `iter_transcripts`)."""
    return list(iter_transcripts(path, game=game))


# --- generation ----------------------------------------------------------------------------------
def game_seed(seed: int, index: int) -> int:
    """The seed of game `index` of a run seeded `seed`: independent of worker count and order."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint32)[0])


def _winner(returns: list[float]) -> int | None:
    best = max(returns)
    return returns.index(best) if best > min(returns) else None


def play_game(
    game: envs.Game, expert: envs.experts.Expert, seed: int, *, opening_plies: int = 0
) -> dict[str, Any]:
    """One expert-vs-itself game as a transcript dict; the first `opening_plies` moves are random."""
    expert.reset(seed)
    state = game.new_initial_state()
    moves = []
    while not state.is_terminal():
        if state.move_number() < opening_plies:
            action, explored = expert.rng.choice(state.legal_actions()), True
        else:
            d = expert.decide(state)
            action, explored = d.action, d.explored
        moves.append(
            {
                "player": state.current_player(),
                "prompt": state.prompt(),
                "action": action,
                "text": state.action_to_text(action),
                "explored": explored,
            }
        )
        state.apply_action(action)
    returns = [float(r) for r in state.returns()]
    options = expert.options()
    return {
        "format": FORMAT,
        "game": game.name,
        "game_options": game.options,
        "expert": expert.name,
        "expert_options": options,
        "seed": seed,
        "moves": moves,
        "returns": returns,
        "winner": _winner(returns),
    }


@dataclass(frozen=True)
class _Job:
    game: str
    expert: str
    seed: int
    opening_plies: int


_worker: tuple[envs.Game, envs.experts.Expert, _Job] | None = None


def _init_worker(job: _Job) -> None:
    global _worker
    game = envs.make(job.game)
    _worker = (game, make_expert(job.expert, game), job)


def _play_index(index: int) -> str:
    assert _worker is not None
    game, expert, job = _worker
    record = play_game(game, expert, game_seed(job.seed, index), opening_plies=job.opening_plies)
    return json.dumps(record, separators=(",", ":"))


@dataclass(frozen=True)
class Summary:
    games: int
    distinct: int
    wins: list[int]  # per player
    draws: int
    moves: int
    seconds: float

    def __str__(self) -> str:
        wins = ", ".join(f"player {p} won {w}" for p, w in enumerate(self.wins))
        return (
            f"{self.games} games ({self.distinct} distinct), {wins}, {self.draws} drawn; "
            f"{self.moves} moves in {self.seconds:.1f} s ({self.games / max(self.seconds, 1e-9):.1f} games/s)"
        )


def generate(
    game: str,
    expert: str,
    games: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    workers: int = 0,
    opening_plies: int = 0,
    progress: bool = True,
) -> Summary:
    """Write `games` expert games to `out` (atomically), in parallel over `workers` processes (0 = all cores).

    The file depends only on the arguments, never on the number of workers.
    """
    g = envs.make(game)  # fail fast, in this process, on a bad game or expert spec
    make_expert(expert, g)
    if games < 1:
        raise ValueError(f"games must be >= 1, got {games}")
    if opening_plies < 0:
        raise ValueError(f"opening_plies must be >= 0, got {opening_plies}")
    workers = min(workers or os.cpu_count() or 1, games)
    job = _Job(game, expert, seed, opening_plies)
    start = time.perf_counter()
    wins, draws, moves, seen = [0] * g.num_players(), 0, 0, set()
    with atomic_open(out) as f, tqdm(total=games, unit="game", disable=not progress, desc=game) as bar:
        if workers == 1:
            _init_worker(job)
            lines: Iterator[str] = map(_play_index, range(games))
            pool = None
        else:
            pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(job,))
            lines = pool.imap(_play_index, range(games), chunksize=max(1, min(16, games // (workers * 8))))
        try:
            for line in lines:
                f.write(line + "\n")
                record = json.loads(line)
                if record["winner"] is None:
                    draws += 1
                else:
                    wins[record["winner"]] += 1
                moves += len(record["moves"])
                seen.add(tuple(m["action"] for m in record["moves"]))
                bar.update()
        finally:
            if pool is not None:
                pool.terminate()
    return Summary(games, len(seen), wins, draws, moves, time.perf_counter() - start)


# --- text transcripts (reward environments) ---------------------------------------------------
TEXT_FORMAT = "selfplay.text/1"


def expert_transcripts(
    env: envs.RewardEnv, n: int, *, seed: int = 0, teacher: str = "expert"
) -> list[dict[str, Any]]:
    """`n` episodes of the env's `teacher` (its exact expert by default) as "selfplay.text/1" records (see
    the module docstring); a teacher's wrong answers are kept, with their score."""
    records = []
    for task in sample_tasks(env, n, seed=seed):
        episode = run_episode(env, task, teacher=teacher)
        records.append(
            {
                "format": TEXT_FORMAT,
                "env": env.name,
                "options": dict(env.options),
                "task": {"id": task.id, "prompt": task.prompt, "data": task.data},
                "turns": episode.turns,
                "score": episode.score.value,
                **({} if teacher == "expert" else {"teacher": teacher}),
            }
        )
    return records


class TextTranscriptError(TranscriptError):
    """A malformed text transcript file; the message names the file and line."""


_RECORD_KEYS = {"format", "env", "options", "task", "turns", "score"}


def _check_record(r: object, envs_by_key: dict[str, envs.RewardEnv]) -> None:
    if not isinstance(r, dict) or not _RECORD_KEYS <= set(r) <= _RECORD_KEYS | {"teacher"}:
        got = sorted(r) if isinstance(r, dict) else type(r).__name__
        raise ValueError(
            f"a record is an object with keys {sorted(_RECORD_KEYS)} (and optionally teacher), got {got}"
        )
    if not isinstance(r.get("teacher", ""), str):
        raise ValueError(f"teacher must be a string, got {r['teacher']!r}")
    if r["format"] != TEXT_FORMAT:
        raise ValueError(f"format must be {TEXT_FORMAT!r}, got {r['format']!r}")
    if not isinstance(r["options"], dict):
        raise ValueError("options must be an object")
    if isinstance(r["env"], str) and r["env"] in envs.names(kind="game"):
        raise ValueError(f"{r['env']!r} is a game, not a reward environment")
    key = json.dumps([r["env"], r["options"]], sort_keys=True)
    if key not in envs_by_key:
        try:
            envs_by_key[key] = envs.make(r["env"], **r["options"])
        except (envs.UnknownEnvError, TypeError, ValueError) as e:
            raise ValueError(str(e)) from None
    env = envs_by_key[key]
    t = r["task"]
    if not isinstance(t, dict) or set(t) != {"id", "prompt", "data"}:
        raise ValueError("task must be an object with keys id, prompt, data")
    if not isinstance(t["id"], str) or not isinstance(t["prompt"], str) or not isinstance(t["data"], dict):
        raise ValueError("task id and prompt must be strings and data an object")
    task = envs.Task(env.name, t["id"], t["prompt"], t["data"])
    turns = r["turns"]
    if not isinstance(turns, list) or not turns:
        raise ValueError("turns must be a non-empty list")
    completions: list[object] = []
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict) or set(turn) != {"prompt", "completion"}:
            raise ValueError(f"turn {i} must be an object with keys prompt, completion")
        expected = env.prompt_for(task, completions)
        if expected is None:
            raise ValueError(f"turn {i} comes after the end of the episode")
        if turn["prompt"] != expected:
            raise ValueError(f"turn {i}: prompt does not match the task and the turns before it")
        completions.append(turn["completion"])
    score = env.score_episode(task, completions).value
    if not isinstance(r["score"], (int, float)) or abs(r["score"] - score) > 1e-9:
        raise ValueError(f"score {r['score']!r} does not match the episode's score {score}")


def load_text_transcripts(path: str | os.PathLike, *, env: str | None = None) -> list[dict[str, Any]]:
    """The records of a JSONL file, each validated by replaying its turns and rescoring them.

    Raises `TextTranscriptError` naming FILE:LINE of the first bad line.
    """
    path = Path(path)
    if not path.is_file():
        raise TextTranscriptError(f"{path}: no such transcript file")
    records: list[dict[str, Any]] = []
    envs_by_key: dict[str, envs.RewardEnv] = {}
    for where, r in iter_jsonl(path, TextTranscriptError):
        try:
            _check_record(r, envs_by_key)
        except ValueError as e:
            raise TextTranscriptError(f"{where}: {e}") from None
        if env is not None and r["env"] != env:
            raise TextTranscriptError(
                f"{where}: transcript is for environment {r['env']!r}, expected {env!r}"
            )
        records.append(r)
    if not records:
        raise TextTranscriptError(f"{path}: the file holds no transcripts")
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfplay.transcripts", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--game",
        required=True,
        help=f"a game ({', '.join(envs.names())}) or reward environment ({', '.join(envs.names('reward'))})",
    )
    p.add_argument(
        "--expert",
        required=True,
        help="a game's expert spec (alphabeta:depth=4, minimax, mcts:200), or a reward environment's "
        "teacher: expert, or one with systematic errors (arithmetic: no_carry, seldom_carries)",
    )
    p.add_argument("--options", default="{}", help="a reward environment's options, as JSON")
    p.add_argument("--games", type=int, required=True, help="number of games (episodes)")
    p.add_argument("--out", required=True, help="output JSONL path (written atomically)")
    p.add_argument("--seed", type=int, default=0, help="base seed; game i uses a seed derived from (seed, i)")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument("--opening-plies", type=int, default=0, help="random moves (marked explored) at the start")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.game in envs.names(kind="reward"):
        return _write_episodes(args)
    if args.options != "{}":
        print(f"error: --options: the game {args.game!r} takes no options", file=sys.stderr)
        return 2
    try:
        summary = generate(
            args.game,
            args.expert,
            args.games,
            args.out,
            seed=args.seed,
            workers=args.workers,
            opening_plies=args.opening_plies,
            progress=not args.no_progress,
        )
    except (envs.UnknownEnvError, ExpertSpecError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {summary}")
    if summary.distinct < 0.9 * summary.games:
        print(
            f"note: only {summary.distinct} of {summary.games} games differ; "
            "--opening-plies or an expert's epsilon adds variety"
        )
    return 0


def _write_episodes(args: argparse.Namespace) -> int:
    """`main` for a reward environment: its teacher's episodes, checked before any is written."""
    try:
        options = json.loads(args.options)
        if not isinstance(options, dict):
            raise ValueError(f"--options must be a JSON object, got {args.options!r}")
        env = envs.make(args.game, **options)
        env.teacher(args.expert)
        if args.games < 1:
            raise ValueError(f"--games must be at least 1, got {args.games}")
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    records = expert_transcripts(env, args.games, seed=args.seed, teacher=args.expert)
    atomic_write_text(Path(args.out), "".join(json.dumps(r) + "\n" for r in records))
    right = sum(r["score"] for r in records) / len(records)
    print(f"wrote {args.out}: {len(records)} {args.game} episodes by {args.expert}, mean score {right:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
