"""Playing the arena's schedule: which games, from which openings, in which processes.

The schedule is deterministic: game i of a pair has an id (the two names sorted, the seed, the opening
plies, i), its players' seeds derive from that id, and games 2k and 2k+1 start from the same random
opening (`opening_plies` random moves, the same for every pair) with colours swapped, so even two
deterministic players meet in varied positions and neither colour is favoured.

Every finished game is appended to OUT/matches.jsonl (`selfplay.arena.matches`; flushed and fsynced) as it
ends. A restarted arena reads that file, skips the games it holds and plays only the rest, so a killed
arena loses at most the games in flight and never counts one twice.

Work is spread over spawned processes in chunks of up to `batch` games; within a chunk all games advance
a ply at a time and each deterministic player (policy, search) gets one batched `act` call per ply for
all the games it is to move in.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import random
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import envs
import selfplay.arena.players as players
from selfplay.arena.matches import FORMAT, MATCHES, load_matches, record_key

OPENING_PLIES = {"tictactoe": 1, "connect_four": 2, "othello": 4}  # othello's 4 first moves are symmetric
DEFAULT_OPENING_PLIES = 2


# --- the schedule -------------------------------------------------------------------------------------
def _derive(*parts: int | str) -> int:
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else p for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class Scheduled:
    """One game of the schedule; `key` identifies it in the matches file."""

    pair: tuple[str, str]  # the two player names, sorted
    index: int  # game index within the pair: even -> pair[0] moves first
    seed: int  # the arena's seed
    opening_plies: int

    @property
    def key(self) -> tuple[str, str, int, int, int]:
        return (*self.pair, self.seed, self.opening_plies, self.index)

    @property
    def colours(self) -> tuple[str, str]:
        """(first mover, second mover)."""
        return self.pair if self.index % 2 == 0 else (self.pair[1], self.pair[0])

    @property
    def game_seed(self) -> int:
        return _derive(self.seed, *self.pair, self.index)

    def opening(self, game: envs.Game) -> envs.State:
        """The start position: the same random plies for both colours of a pair (and for every pair)."""
        rng = random.Random(_derive(self.seed, "opening", self.opening_plies, self.index // 2))
        state = game.new_initial_state()
        for _ in range(self.opening_plies):
            if state.is_terminal():
                break
            state.apply_action(rng.choice(state.legal_actions()))
        return state


def schedule(
    names: Sequence[str], *, games: int, seed: int, opening_plies: int, gauntlet: str | None = None
) -> list[Scheduled]:
    """Every game to play: each pair (or `gauntlet` against each other name) `games` times."""
    if games < 2 or games % 2:
        raise ValueError(f"games per pair must be even (half with each colour) and >= 2, got {games}")
    if gauntlet is not None:
        pairs = [(gauntlet, n) for n in names if n != gauntlet]
    else:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    pairs = [tuple(sorted(p)) for p in pairs]
    return [Scheduled(p, i, seed, opening_plies) for p in pairs for i in range(games)]


# --- playing --------------------------------------------------------------------------------------------
def _record(game: envs.Game, job: Scheduled, state: envs.State) -> dict[str, Any]:
    replay = game.new_initial_state()
    moves = []
    for a in state.history():
        moves.append(replay.action_to_text(a))
        replay.apply_action(a)
    returns = [float(r) for r in state.returns()]
    winner = None if returns[0] == returns[1] else int(returns[1] > returns[0])
    return {
        "format": FORMAT,
        "game": game.name,
        "players": list(job.colours),
        "pair": list(job.pair),
        "index": job.index,
        "seed": job.seed,
        "opening_plies": job.opening_plies,
        "moves": moves,
        "returns": returns,
        "winner": winner,
        "score": 0.5 if winner is None else float(winner == 0),  # of players[0], the first mover
    }


def play_games(
    game: envs.Game, jobs: Sequence[Scheduled], pool: Mapping[str, players.Player]
) -> Iterator[dict[str, Any]]:
    """Play `jobs` side by side, yielding each game's record as it ends; `pool` maps names to players."""
    live = []
    for job in jobs:
        movers = [pool[n].for_game(_derive(job.game_seed, c)) for c, n in enumerate(job.colours)]
        live.append((job, job.opening(game), movers))
    while live:
        turns: dict[int, tuple[players.Player, list[envs.State]]] = {}
        for _, state, movers in live:
            if not state.is_terminal():
                p = movers[state.current_player()]
                turns.setdefault(id(p), (p, []))[1].append(state)
        for p, states in turns.values():  # one batched call per player object
            for state, action in zip(states, p.act(states), strict=True):
                state.apply_action(action)
        for job, state, _ in live:
            if state.is_terminal():
                yield _record(game, job, state)
        live = [g for g in live if not g[1].is_terminal()]


_worker: dict[str, Any] = {}


def _init_worker(game: str, device: str, specs: Mapping[str, str], pooled: bool = False) -> None:
    _worker.update(game=envs.make(game), device=device, specs=dict(specs), players={}, pooled=pooled)


def _player(name: str) -> players.Player:
    """The player of a schedule name, made from the spec that name stands for (`_names`)."""
    cache = _worker["players"]
    if name not in cache:
        spec = _worker["specs"][name]
        if _worker["pooled"] and Path(spec.rpartition("@")[0] or spec).exists():
            import torch  # here: an arena of experts alone needs no torch

            torch.set_num_threads(1)  # processes, not threads, share out the cores
        cache[name] = players.make(spec, _worker["game"], device=_worker["device"])
    return cache[name]


def _play_chunk(jobs: list[Scheduled]) -> list[dict[str, Any]]:
    pool = {n: _player(n) for job in jobs for n in job.pair}
    return list(play_games(_worker["game"], jobs, pool))


# --- the arena --------------------------------------------------------------------------------------------
def default_out(game: str, specs: Sequence[str | None]) -> Path:
    """RUN/arena for the first player that is (or lives in) a run directory, else runs/arena/GAME."""
    for spec in filter(None, specs):
        path = Path(spec.rpartition("@")[0] if "@mcts" in spec else spec)
        if (path / "checkpoints").is_dir():
            return path / "arena"
        if path.parent.name == "checkpoints" and (path / "config.json").is_file():
            return path.parent.parent / "arena"
    return Path("runs") / "arena" / game


def home_of(out_dir: str | os.PathLike) -> Path | None:
    """The run directory whose arena `out_dir` is (RUN/arena), which names its checkpoints relative to
    itself; None for an arena directory of its own."""
    out = Path(out_dir)
    return out.parent if out.name == "arena" and (out.parent / "checkpoints").is_dir() else None


def _names(specs: Sequence[str], game: envs.Game, home: Path | None) -> dict[str, str]:
    """Normalised name -> spec (paths absolute) of every player, run directories expanded, duplicates
    dropped, all validated."""
    out: dict[str, str] = {}
    for spec in specs:
        for one in players.expand(spec):
            out.setdefault(players.check(one, game, home=home), players.absolute(one))
    return out


def play(
    game: str,
    specs: Sequence[str],
    *,
    gauntlet: str | None = None,
    games: int = 20,
    seed: int = 0,
    workers: int = 1,
    out_dir: str | os.PathLike | None = None,
    opening_plies: int | None = None,
    batch: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> list[dict]:
    """Play the schedule's missing games into OUT/matches.jsonl; returns the records of the schedule.

    Every spec is checked, and the matches file read, before the first game: bad input is a
    `PlayerSpecError`, `MatchesError` or `ValueError` with nothing played.
    """
    jobs, done, by_name, out = _plan(game, specs, gauntlet, games, seed, out_dir, opening_plies, batch)
    todo = [j for j in jobs if j.key not in done]
    path = out / MATCHES
    if todo:
        out.mkdir(parents=True, exist_ok=True)
        workers = min(workers or os.cpu_count() or 1, math.ceil(len(todo) / 2))
        size = max(2, min(batch, math.ceil(len(todo) / (4 * workers))))
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        with (
            path.open("a", encoding="utf-8") as f,
            tqdm(
                total=len(jobs), initial=len(jobs) - len(todo), unit="game", desc=game, disable=not progress
            ) as bar,
        ):
            for r in _run_chunks(game, device, by_name, chunks, workers):
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
                done[record_key(r)] = r
                bar.update()
    return [done[j.key] for j in jobs]


def missing(
    game: str,
    specs: Sequence[str],
    *,
    gauntlet: str | None = None,
    games: int = 20,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    opening_plies: int | None = None,
) -> int:
    """How many games of the schedule `play` would play (those not yet in OUT/matches.jsonl)."""
    jobs, done, _, _ = _plan(game, specs, gauntlet, games, seed, out_dir, opening_plies, 1)
    return sum(j.key not in done for j in jobs)


def _plan(game, specs, gauntlet, games, seed, out_dir, opening_plies, batch):
    """(the schedule, the games recorded by key, name -> spec, the arena directory), every input checked."""
    g = envs.make(game)
    if g.num_players() != 2:
        raise ValueError(f"the arena plays two-player games; {game} has {g.num_players()}")
    out = Path(out_dir) if out_dir is not None else default_out(game, [gauntlet, *specs])
    home = home_of(out)
    by_name = _names(specs, g, home)
    names = list(by_name)
    focus = None
    if gauntlet is not None:
        one = _names([gauntlet], g, home)
        if len(one) != 1:
            raise players.PlayerSpecError(f"--gauntlet takes one player, {gauntlet!r} is {len(one)}")
        focus = next(iter(one))
        by_name.update(one)
        names = [focus, *(n for n in names if n != focus)]
    if len(names) < 2:
        raise ValueError(f"an arena needs at least two distinct players, got {names}")
    plies = OPENING_PLIES.get(game, DEFAULT_OPENING_PLIES) if opening_plies is None else opening_plies
    if plies < 0 or batch < 1:
        raise ValueError("opening plies must be >= 0 and batch >= 1")
    jobs = schedule(names, games=games, seed=seed, opening_plies=plies, gauntlet=focus)
    done = {record_key(r): r for r in load_matches(out / MATCHES, game=game, repair=True)}
    return jobs, done, by_name, out


def _run_chunks(
    game: str, device: str, specs: Mapping[str, str], chunks: list[list[Scheduled]], workers: int
) -> Iterator[dict]:
    if workers <= 1:  # in this process: each record is yielded (and written) the moment its game ends
        _init_worker(game, device, specs)
        for chunk in chunks:
            yield from play_games(_worker["game"], chunk, {n: _player(n) for j in chunk for n in j.pair})
        return
    pool = mp.get_context("spawn").Pool(
        workers, initializer=_init_worker, initargs=(game, device, specs, True)
    )
    try:
        for records in pool.imap_unordered(_play_chunk, chunks):
            yield from records
    finally:
        pool.terminate()
