"""Matches between any players (checkpoints, search budgets, baselines) and the league table they make.

    python -m selfplay.arena --game connect_four runs/c4 random alphabeta:2 --games 20
    python -m selfplay.arena --game connect_four --gauntlet runs/c4/checkpoints/imitation random mcts:200
    python -m selfplay.arena --game tictactoe --budgets 0,16,64,256 runs/ttt/checkpoints/imitation

Players are `selfplay.players` specs; a run directory stands for all its checkpoints. Every pair (all of
them, or the `--gauntlet` player against each other one) plays `--games` games, half with each colour.

The schedule is deterministic: game i of a pair has an id (the two names sorted, the seed, the opening
plies, i), its players' seeds derive from that id, and games 2k and 2k+1 start from the same random
opening (`opening_plies` random moves, the same for every pair) with colours swapped, so even two
deterministic players meet in varied positions and neither colour is favoured.

Every finished game is appended to OUT/matches.jsonl (flushed and fsynced) as it ends. A restarted arena
reads that file, skips the games it holds and plays only the rest, so a killed arena loses at most the
games in flight and never counts one twice. Ratings (`selfplay.ratings`) use every game in the file,
also those of earlier arenas: OUT/ratings.md and .csv hold the league table.

Work is spread over spawned processes in chunks of up to `batch` games; within a chunk all games advance
a ply at a time and each deterministic player (policy, search) gets one batched `act` call per ply for
all the games it is to move in.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import reprlib
import sys
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import envs
from envs import jsonl
from selfplay import players, ratings
from selfplay.io import atomic_write_text

__all__ = [
    "FORMAT",
    "MATCHES",
    "MatchesError",
    "Scheduled",
    "gauntlet",
    "home_of",
    "load_matches",
    "main",
    "play",
    "ratings_from",
    "results_of",
    "sample_opponents",
    "schedule",
    "steps_of",
    "thinking_longer",
    "write_league",
]

FORMAT = "selfplay.match/1"
MATCHES = "matches.jsonl"
OPENING_PLIES = {"tictactoe": 1, "connect_four": 2, "othello": 4}  # othello's 4 first moves are symmetric
DEFAULT_OPENING_PLIES = 2


class MatchesError(ValueError):
    """A matches file that cannot be used (another game, a corrupt line); names the file and line."""


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
            import torch

            torch.set_num_threads(1)  # processes, not threads, share out the cores
        cache[name] = players.make(spec, _worker["game"], device=_worker["device"])
    return cache[name]


def _play_chunk(jobs: list[Scheduled]) -> list[dict[str, Any]]:
    pool = {n: _player(n) for job in jobs for n in job.pair}
    return list(play_games(_worker["game"], jobs, pool))


# --- the matches file -------------------------------------------------------------------------------------
def _key(r: Mapping[str, Any]) -> tuple[str, str, int, int, int]:
    return (*r["pair"], r["seed"], r["opening_plies"], r["index"])


def _problem(r: Any) -> str | None:
    """What is wrong with a match record, or None."""
    if not isinstance(r, dict):
        return f"expected a JSON object, got {type(r).__name__}"
    for key in ("players", "pair"):
        names = r.get(key)
        if not (isinstance(names, list) and len(names) == 2 and all(isinstance(n, str) for n in names)):
            return f"{key!r} must be a list of two player names, got {reprlib.repr(names)}"
    for key in ("seed", "opening_plies", "index"):
        if isinstance(r.get(key), bool) or not isinstance(r.get(key), int):
            return f"{key!r} must be an integer, got {reprlib.repr(r.get(key))}"
    if isinstance(r.get("score"), bool) or r.get("score") not in (0, 0.5, 1):
        return f"'score' (the first mover's) must be 0, 0.5 or 1, got {reprlib.repr(r.get('score'))}"
    return None


def load_matches(path: str | os.PathLike, *, game: str | None = None, repair: bool = False) -> list[dict]:
    """The game records of a matches file, each once, each checked (`MatchesError` names FILE:LINE). A
    truncated last line (an arena killed while writing) is skipped with a warning, and cut off the file
    when `repair` is set."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records, seen, good_end = [], set(), 0
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, 1):
        last = lineno == len(lines)
        if not line.strip():
            good_end += len(line) + (not last)
            continue
        try:
            r = jsonl.loads(line)
        except ValueError as e:
            if last:  # written without its newline: the arena died mid-line
                print(f"warning: {path}:{lineno}: ignoring a truncated last line", file=sys.stderr)
                break
            raise MatchesError(f"{path}:{lineno}: not a match record: {e}") from None
        if problem := _problem(r):
            raise MatchesError(f"{path}:{lineno}: not a match record: {problem}")
        if game is not None and r.get("game") != game:
            raise MatchesError(f"{path}:{lineno}: a {r.get('game')!r} game, but this arena plays {game!r}")
        key = _key(r)
        if key not in seen:
            seen.add(key)
            records.append(r)
        good_end += len(line) + (not last)
    if repair and good_end < len(data):
        with path.open("r+b") as f:
            f.truncate(good_end)
    if repair and good_end and not data[:good_end].endswith(b"\n"):
        with path.open("ab") as f:
            f.write(b"\n")
    return records


def results_of(records: Sequence[Mapping[str, Any]]) -> list[ratings.Result]:
    """(first mover, second mover, first mover's score) of each record, as `selfplay.ratings` takes them."""
    return [(r["players"][0], r["players"][1], float(r["score"])) for r in records]


# --- the arena --------------------------------------------------------------------------------------------
def _default_out(game: str, specs: Sequence[str | None]) -> Path:
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
    g = envs.make(game)
    if g.num_players() != 2:
        raise ValueError(f"the arena plays two-player games; {game} has {g.num_players()}")
    out = Path(out_dir) if out_dir is not None else _default_out(game, [gauntlet, *specs])
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
    path = out / MATCHES
    done = {_key(r): r for r in load_matches(path, game=game, repair=True)}
    todo = [j for j in jobs if j.key not in done]
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
                done[_key(r)] = r
                bar.update()
    return [done[j.key] for j in jobs]


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


def ratings_from(
    out_dir: str | os.PathLike,
    *,
    anchor: str | None = "random",
    anchor_elo: float = 0.0,
    samples: int = 200,
    seed: int = 0,
) -> list[ratings.Row]:
    """The league table over every game in OUT/matches.jsonl (the connected group holding `anchor`, or
    else the largest, if the file holds players that never met)."""
    results = results_of(load_matches(Path(out_dir) / MATCHES))
    if not results:
        raise ratings.RatingsError(f"{Path(out_dir) / MATCHES}: no games recorded")
    groups = ratings.groups(results)
    keep = next((g for g in groups if anchor in g), max(groups, key=len))
    results = [r for r in results if r[0] in keep]
    return ratings.league_table(results, anchor=anchor, anchor_elo=anchor_elo, samples=samples, seed=seed)


def write_league(
    out_dir: str | os.PathLike, rows: Sequence[ratings.Row], *, anchor: str | None, anchor_elo: float = 0.0
) -> Path:
    """OUT/ratings.md and OUT/ratings.csv; returns the Markdown path."""
    note = ratings.anchoring([r.name for r in rows], anchor, anchor_elo) + "; 95% bootstrap intervals."
    md, _ = ratings.write_table(rows, Path(out_dir) / "ratings", note=note)
    return md


# --- the API the training loop calls ---------------------------------------------------------------------
def gauntlet(
    candidate: str,
    opponents: Sequence[str],
    game: str,
    *,
    games: int,
    seed: int,
    out_dir: str | os.PathLike,
    workers: int = 1,
    opening_plies: int | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> list[dict]:
    """`candidate` against each opponent, `games` games each, recorded in OUT/matches.jsonl."""
    return play(
        game,
        list(opponents),
        gauntlet=candidate,
        games=games,
        seed=seed,
        workers=workers,
        out_dir=out_dir,
        opening_plies=opening_plies,
        device=device,
        progress=progress,
    )


def steps_of(names: Sequence[str], home: str | os.PathLike | None = None) -> dict[str, int]:
    """Training step (from the checkpoint's meta) of every checkpoint player among `names` (those of the
    run directory `home` named relative to it)."""
    steps = {}
    for name in names:
        path = Path(name.rpartition("@")[0] if "@mcts" in name else name)
        if home is not None and (Path(home) / path / "meta.json").is_file():
            path = Path(home) / path
        if (path / "meta.json").is_file():
            step = players.checkpoint_meta(path).get("step")
            if isinstance(step, int):
                steps[name] = step
    return steps


def sample_opponents(
    elo: Mapping[str, float], candidate_elo: float, k: int, rng: np.random.Generator, *, scale: float = 200.0
) -> list[str]:
    """`k` opponents drawn (with replacement) with weight exp(-|elo - candidate_elo| / scale): mostly
    players of about the candidate's strength, now and then a much stronger or weaker one."""
    names = list(elo)
    if not names:
        raise ValueError("no opponents to sample from")
    w = -np.abs(np.array([elo[n] for n in names]) - candidate_elo) / scale
    p = np.exp(w - w.max())
    return [names[i] for i in rng.choice(len(names), size=k, p=p / p.sum())]


def thinking_longer(
    checkpoint: str,
    budgets: Sequence[int],
    game: str,
    *,
    against: Sequence[str] = ("random",),
    out_dir: str | os.PathLike | None = None,
    anchor: str | None = "random",
    samples: int = 200,
    **arena: Any,
) -> tuple[list[ratings.Row], Path, Path]:
    """One checkpoint at several search budgets, in a round robin with `against`: the Elo of each budget
    as OUT/budgets.md and OUT/budgets.png. Returns the budget rows and the two paths."""
    if not budgets or any(b < 0 for b in budgets):
        raise ValueError(f"budgets must be simulation counts >= 0, got {list(budgets)}")
    specs = [checkpoint if b == 0 else f"{checkpoint}@mcts:{b}" for b in budgets]
    g = envs.make(game)
    out = Path(out_dir) if out_dir is not None else _default_out(game, [checkpoint])
    by_name = {players.check(s, g, home=home_of(out)): b for s, b in zip(specs, budgets, strict=True)}
    play(game, [*specs, *against], out_dir=out, **arena)
    rows = ratings_from(out, anchor=anchor, samples=samples)
    write_league(out, rows, anchor=anchor)
    mine = [r for r in rows if r.name in by_name]
    lines = ["| simulations | Elo | 95% CI | games | score |", "|---:|---:|---:|---:|---:|"]
    for r in sorted(mine, key=lambda r: by_name[r.name]):
        lines.append(
            f"| {by_name[r.name]} | {r.elo:.0f} | {r.lo:.0f} to {r.hi:.0f} | {r.games} | {r.score:.3f} |"
        )
    note = ratings.anchoring([r.name for r in rows], anchor)
    md = out / "budgets.md"
    atomic_write_text(
        md,
        f"Elo of {checkpoint} against search budget ({game})\n\n" + "\n".join(lines) + "\n\n"
        f"{note}; 95% bootstrap intervals; round robin with {', '.join(against)}.\n",
    )
    png = ratings.plot_elo_by_budget(rows, by_name, out / "budgets.png", title=f"{checkpoint} ({game})")
    return mine, md, png


# --- the command ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m selfplay.arena",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[1],
    )
    p.add_argument("players", nargs="*", help="player specs: checkpoint, run directory, PATH@mcts:N, expert")
    p.add_argument("--game", required=True, help=f"one of: {', '.join(envs.names())}")
    p.add_argument("--gauntlet", metavar="PLAYER", help="play only this player against each of the others")
    p.add_argument(
        "--budgets", help="thinking longer: simulation counts, e.g. 0,16,64,256, for the one checkpoint given"
    )
    p.add_argument("--against", default="random", help="with --budgets: comma-separated opponents")
    p.add_argument("--games", type=int, default=20, help="games per pair, even (half with each colour)")
    p.add_argument("--seed", type=int, default=0, help="schedule seed: openings and players' randomness")
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument(
        "--out", help="directory for matches.jsonl and tables (default RUN/arena or runs/arena/GAME)"
    )
    p.add_argument(
        "--opening-plies",
        type=int,
        help=f"random moves before the players take over (default {OPENING_PLIES}, else 2)",
    )
    p.add_argument("--batch", type=int, default=64, help="games played side by side in one process")
    p.add_argument(
        "--device", default="auto", help="torch device for checkpoint players (auto: CUDA if present)"
    )
    p.add_argument("--anchor", default="random", help="the player whose Elo is fixed (default random)")
    p.add_argument("--anchor-elo", type=float, default=0.0, help="the anchor's Elo (default 0)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    knobs = dict(
        games=args.games,
        seed=args.seed,
        workers=args.workers,
        opening_plies=args.opening_plies,
        batch=args.batch,
        device=args.device,
        progress=not args.no_progress,
    )
    try:
        if args.game in envs.names(kind="reward"):
            raise ValueError(
                f"{args.game!r} is a reward environment; the arena plays games: {', '.join(envs.names())}"
            )
        if args.budgets is not None:
            if len(args.players) != 1 or args.gauntlet:
                raise ValueError("--budgets takes exactly one checkpoint (and no --gauntlet)")
            try:
                budgets = [int(b) for b in args.budgets.split(",")]
            except ValueError:
                raise ValueError(f"--budgets: comma-separated integers, got {args.budgets!r}") from None
            against = [a for a in args.against.split(",") if a.strip()]
            rows, md, png = thinking_longer(
                args.players[0],
                budgets,
                args.game,
                against=against,
                out_dir=args.out,
                anchor=args.anchor,
                samples=args.bootstrap,
                **knobs,
            )
            print(md.read_text(), end="")
            print(f"wrote {md} and {png}")
            return 0
        specs = list(args.players)
        out = Path(args.out) if args.out else _default_out(args.game, [args.gauntlet, *specs])
        play(args.game, specs, gauntlet=args.gauntlet, out_dir=out, **knobs)
        rows = ratings_from(out, anchor=args.anchor, anchor_elo=args.anchor_elo, samples=args.bootstrap)
        md = write_league(out, rows, anchor=args.anchor, anchor_elo=args.anchor_elo)
    except (
        envs.UnknownEnvError,
        players.PlayerSpecError,
        MatchesError,
        ratings.RatingsError,
        ValueError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(md.read_text(), end="")
    print(f"wrote {md} and {md.with_suffix('.csv')}; games in {out / MATCHES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
