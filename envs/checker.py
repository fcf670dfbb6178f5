"""The checkers every game and every reward environment must pass, for new ones as much as the built-in
ones (cf. Gymnasium's check_env).

>>> import envs
>>> envs.check_game(envs.make("tictactoe"))
"""

from __future__ import annotations

import json
import random

import numpy as np

from envs.core import TERMINAL, Game, IllegalMoveError, State
from envs.reward import RewardEnv, Task, run_episode, sample_tasks


class GameCheckError(AssertionError):
    """A game that breaks the contract; the message says which rule, after which moves."""


def _fail(state: State, rule: str) -> None:
    raise GameCheckError(f"{state.game.name}: {rule} (after actions {state.history()})")


def _snapshot(s: State) -> tuple:
    return (s.history(), s.legal_actions(), s.current_player(), s.is_terminal(), s.prompt(), s.key())


def _check_state(game: Game, s: State) -> None:
    n = game.num_players()
    legal = s.legal_actions()
    if s.is_terminal():
        if legal or s.current_player() != TERMINAL:
            _fail(s, "a terminal state must have no legal actions and current_player() == TERMINAL")
        if abs(sum(s.returns())) > 1e-6 or len(s.returns()) != n:
            _fail(s, f"returns() must hold {n} values summing to zero, got {s.returns()}")
        return
    if not legal:
        _fail(s, "a non-terminal state must have a legal action (a pass, if the game has one)")
    if legal != sorted(set(legal)) or not all(0 <= a < game.num_distinct_actions() for a in legal):
        _fail(s, f"legal_actions() must be sorted, distinct and in [0, num_distinct_actions), got {legal}")
    if not 0 <= s.current_player() < n:
        _fail(s, f"current_player() must be in [0, {n}), got {s.current_player()}")
    if s.returns() != [0.0] * n:
        _fail(s, f"returns() must be all zeros before the end, got {s.returns()}")
    texts = [s.action_to_text(a) for a in legal]
    if len(set(texts)) != len(texts):
        _fail(s, f"legal moves must have distinct texts, got {texts}")
    if [s.text_to_action(t) for t in texts] != legal:
        _fail(s, "text_to_action(action_to_text(a)) must give back a for every legal a")
    if not isinstance(s.prompt(), str) or not s.prompt():
        _fail(s, "prompt() must be non-empty text")
    for p in range(n):
        obs = s.observation(p)
        if not isinstance(obs, np.ndarray) or obs.shape != game.observation_shape():
            _fail(s, f"observation({p}) must be an array of shape {game.observation_shape()}")
    for out_of_range in (-1, game.num_distinct_actions()):
        try:
            s.action_to_text(out_of_range)
        except IndexError:
            pass
        else:
            _fail(s, f"action_to_text({out_of_range}) must raise IndexError (no such action)")
    # An illegal action and an unparsable text must raise and change nothing.
    before = _snapshot(s)
    illegal = next(
        (a for a in range(game.num_distinct_actions()) if a not in legal), game.num_distinct_actions()
    )
    for bad, call in ((illegal, s.apply_action), ("\x00 not a move", s.text_to_action)):
        try:
            call(bad)
        except IllegalMoveError:
            pass
        else:
            _fail(s, f"{call.__name__}({bad!r}) must raise IllegalMoveError")
        if _snapshot(s) != before:
            _fail(s, f"a rejected {call.__name__}({bad!r}) must leave the state unchanged")


def perft(state: State, depth: int) -> int:
    """Move paths of `depth` plies from `state` (a finished game ends its path early), via clone + apply.

    Compare with published counts to test a game's move generation.
    """
    if depth == 0 or state.is_terminal():
        return 1 if depth == 0 else 0
    total = 0
    for a in state.legal_actions():
        child = state.clone()
        child.apply_action(a)
        total += perft(child, depth - 1)
    return total


def random_states(game: Game, n: int, *, seed: int = 0) -> list[State]:
    """`n` positions (someone to move) after a random number of random moves, up to half a game."""
    rng = random.Random(seed)
    out: list[State] = []
    while len(out) < n:
        s = game.new_initial_state()
        for _ in range(rng.randrange(max(1, game.max_game_length() // 2))):
            if s.is_terminal():
                break
            s.apply_action(rng.choice(s.legal_actions()))
        if not s.is_terminal():
            out.append(s)
    return out


def reachable_states(game: Game, *, limit: int | None = None) -> list[State]:
    """Every distinct position reachable from the start where someone is to move (depth first, by
    `key()`); for games small enough to enumerate, or the first `limit` of them."""
    seen: set = set()
    out: list[State] = []
    stack = [game.new_initial_state()]
    while stack and (limit is None or len(out) < limit):
        s = stack.pop()
        if s.is_terminal() or s.key() in seen:
            continue
        seen.add(s.key())
        out.append(s)
        for a in s.legal_actions():
            child = s.clone()
            child.apply_action(a)
            stack.append(child)
    return out


def _check_symmetries(game: Game, s: State) -> None:
    """Every symmetry maps this game to a legal one with the same outcome, move for move."""
    syms = game.symmetries()
    n = game.num_distinct_actions()
    if not syms or tuple(syms[0]) != tuple(range(n)):
        _fail(s, "symmetries() must list the identity first")
    for perm in syms:
        if sorted(perm) != list(range(n)):
            _fail(s, f"a symmetry must permute the {n} actions, got {perm}")
        try:
            image = s.transformed(perm)
        except IllegalMoveError:
            _fail(s, f"under symmetry {perm} the game is not legal")
        if sorted(perm[a] for a in s.legal_actions()) != image.legal_actions():
            _fail(s, f"under symmetry {perm} the legal moves do not map onto the image's")
        if image.returns() != s.returns() or image.current_player() != s.current_player():
            _fail(s, f"under symmetry {perm} the outcome or the player to move differs")


def check_game(game: Game, *, games: int = 10, seed: int = 0) -> None:
    """Play `games` random games through the public API, checking the contract at every state (and that
    the game's symmetries map each finished game onto a legal one with the same outcome).

    Raises `GameCheckError` naming the rule broken and the actions that led there.
    """
    rng = random.Random(seed)
    for _ in range(games):
        s = game.new_initial_state()
        if s.history() != [] or s.is_terminal():
            _fail(s, "a new initial state must have an empty history and not be over")
        while True:
            _check_state(game, s)
            if s.is_terminal() or s.move_number() % 7 == 3:
                _check_symmetries(game, s)
            if s.is_terminal():
                break
            if s.move_number() >= game.max_game_length():
                _fail(s, f"the game ran past max_game_length() = {game.max_game_length()}")
            a = rng.choice(s.legal_actions())
            clone = s.clone()
            before = _snapshot(s)
            clone.apply_action(a)
            if _snapshot(s) != before:
                _fail(s, "changing a clone must not change the original")
            s.apply_action(a)
            if _snapshot(s) != _snapshot(clone):
                _fail(s, "a clone and the original must agree after the same action")
            if s.history()[-1] != a or s.move_number() != len(s.history()):
                _fail(s, "history() must end with the action just applied")


# --- reward environments ---------------------------------------------------------------------------------
class RewardEnvCheckError(AssertionError):
    """A reward environment that breaks the contract; the message says which rule, on which task."""


_BAD_COMPLETIONS: tuple[object, ...] = (None, b"bytes", 123, 1.5, ["list"], "", "   ", "\n")
_JUNK_TURNS = ("zzz", "-1", "0", "99999999999999999999", "1/0", "(((", "?")


def check_reward_env(env: RewardEnv, *, tasks: int = 20, seed: int = 0) -> None:
    """Check the contract on `tasks` sampled tasks; raises `RewardEnvCheckError` naming the rule broken.

    Sampling is seeded and JSON-ready, prompts fit `max_prompt_chars` and `charset`, the expert solves
    every task (score 1.0) within `max_turns`, each teacher that takes these options writes text without
    a stop string, and bad completions score 0 without raising.
    """

    def fail(rule: str, task: Task | None = None) -> None:
        where = f" (task {task.id}: {task.prompt!r})" if task is not None else ""
        raise RewardEnvCheckError(f"{env.name or type(env).__name__}: {rule}{where}")

    if not isinstance(env.name, str) or not env.name:
        fail("name must be a non-empty string")
    if not isinstance(env.max_turns, int) or env.max_turns < 1:
        fail(f"max_turns must be a positive integer, got {env.max_turns!r}")
    if not env.stop or not all(isinstance(s, str) and s for s in env.stop):
        fail(f"stop must be a tuple of non-empty strings, got {env.stop!r}")
    try:
        json.dumps(env.options)
    except TypeError:
        fail(f"options must be JSON-serialisable, got {env.options!r}")
    charset = set(env.charset)
    teachers = []
    for name in env.teachers:
        try:
            env.teacher(name)
        except ValueError:  # not for these options (the error says so when one asks for it)
            continue
        teachers.append(name)
    first, again = sample_tasks(env, tasks, seed=seed), sample_tasks(env, tasks, seed=seed)
    if first != again:
        fail("sample(rng) must depend only on rng: the same seed gave different tasks")
    for task in first:
        if not isinstance(task, Task) or task.env != env.name or not isinstance(task.id, str) or not task.id:
            fail(f"sample must return a Task of this env with an id (use self.task(...)), got {task!r}")
        if not isinstance(task.data, dict) or json.loads(json.dumps(task.data)) != task.data:
            fail("task data must be a JSON-ready dict", task)
        episode = run_episode(env, task)
        for i, turn in enumerate(episode.turns, 1):
            prompt, completion = turn["prompt"], turn["completion"]
            if not isinstance(prompt, str) or not prompt or len(prompt) > env.max_prompt_chars:
                fail(f"prompt {i} must be non-empty, at most max_prompt_chars = {env.max_prompt_chars}", task)
            if not set(prompt) <= charset:
                fail(f"prompt {i} has characters outside charset: {sorted(set(prompt) - charset)}", task)
            if not isinstance(completion, str) or any(s in completion for s in env.stop):
                fail(f"expert turn {i} must be text without a stop string, got {completion!r}", task)
        if episode.score.value != 1.0:
            fail(f"the expert must score 1.0, got {episode.score.value} {episode.score.details}", task)
        for name in teachers:
            try:
                taught = run_episode(env, task, teacher=name).turns
            except Exception as e:
                fail(f"teacher {name!r} must not raise, raised {type(e).__name__}: {e}", task)
            ok = lambda c: isinstance(c, str) and c and not any(s in c for s in env.stop)  # noqa: E731
            bad = [t["completion"] for t in taught if not ok(t["completion"])]
            if bad:
                fail(f"teacher {name!r} must write non-empty text with no stop string, got {bad[0]!r}", task)
        for bad in (*_BAD_COMPLETIONS, "x" * (env.max_completion_chars + 1)):
            try:
                values = (env.score(task, bad), env.score_episode(task, [bad]).value)
            except Exception as e:
                fail(
                    f"bad completion {str(bad)[:20]!r} must score 0, not raise {type(e).__name__}: {e}", task
                )
            if values != (0.0, 0.0):
                fail(f"bad completion {str(bad)[:20]!r} must score 0, got {values}", task)
        for junk in _JUNK_TURNS if env.max_turns > 1 else ():
            try:
                answer = env.reply(task, [junk])
            except Exception as e:
                fail(f"reply to the turn {junk!r} must not raise, raised {type(e).__name__}: {e}", task)
            if answer is not None and (not isinstance(answer, str) or not set(answer) <= charset):
                fail(f"reply to the turn {junk!r} must be None or text of charset, got {answer!r}", task)
