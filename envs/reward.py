"""Reward environments: text tasks sampled from a seeded generator and scored in [0, 1].

The contract is `RewardEnv`: `sample(rng) -> Task`, `_score(task, completion)`, `expert(task, turns)` and,
for multi-turn tasks, `reply(task, turns)`. The engine calls only the public wrappers, which never raise on
what a policy writes: a completion that is not text, empty, longer than `max_completion_chars` or has a
character outside `charset` scores 0, and so does one on which `_score` raises.

    >>> import numpy as np, envs
    >>> env = envs.make("arithmetic", digits=2, ops="+")
    >>> task = env.sample(np.random.default_rng(0))
    >>> task.prompt, env.expert(task), env.score(task, env.expert(task)), env.score(task, None)
    ('67+34=', '101', 1.0, 0.0)

An episode is a list of policy turns; this loop is the whole protocol (`run_episode` is it, with records):

    turns = []
    while (prompt := env.prompt_for(task, turns)) is not None:  # None once the episode is over
        turns.append(policy(prompt))                             # generation stops at env.stop
    reward = env.score_episode(task, turns).value

The smallest new environment is a decorated sampling function (see `reward_env` and docs/reward-envs.md):

    @envs.reward_env("reverse", expert=lambda task: task.data["word"][::-1])
    def reverse(rng, *, length: int = 5):
        word = "".join(rng.choice(list("abcdefghij"), size=length))
        return f"reverse {word}:", {"word": word}

    envs.register("reverse", reverse)

Expert transcripts of a reward environment (its expert's episodes as JSONL, for imitation) are written
and checked by `selfplay.core.transcripts`, beside the game transcripts.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

CHARSET = "\n" + "".join(chr(c) for c in range(32, 127))
"""Characters of prompts and completions by default: newline and printable ASCII (the char tokenizer's)."""

_MAX_ERROR_CHARS = 200


@dataclass(frozen=True)
class Task:
    """One sampled task: what the policy reads (`prompt`) and what scoring needs (`data`, JSON-ready).

    `id` is a digest of the prompt and data, so the same seed gives the same id.
    """

    env: str
    id: str
    prompt: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Score:
    """A score in [0, 1] and what the scorer said about it (`details["error"]` when the input was bad)."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


class _Invalid(ValueError):
    """A completion that scores 0 before any scorer sees it."""


class RewardEnv(abc.ABC):
    """A text task: sample it, show its prompt, score what the policy writes.

    Subclasses set `name`, take their difficulty knobs as keyword-only `__init__` arguments (passed on to
    `super().__init__(**options)`, so `self.options` reproduces the env), and implement `sample`, `_score`
    and `expert`. Multi-turn environments also set `max_turns` and implement `reply`.
    """

    env_kind: ClassVar[str] = "reward"  # how `envs.register` tells reward environments from games
    name: str = ""
    max_turns: int = 1
    """Policy turns in an episode at most."""
    max_completion_chars: int = 256
    """Longer completions (stop string included) score 0."""
    max_prompt_chars: int = 128
    """A bound on every prompt `prompt_for` gives; the checker holds the env to it."""
    stop: tuple[str, ...] = ("\n",)
    """Generation stops at the first of these; a completion is read up to it."""
    charset: str = CHARSET
    """Every character a prompt may hold and a completion may use."""
    teachers: ClassVar[dict[str, str]] = {}
    """Teachers with systematic errors, beside the exact `expert`: name -> what it gets wrong (`teacher`)."""
    max_work_chars: int = 0
    """The longest text `work` returns; 0: the env shows no work (and has no thinking format)."""

    def __init__(self, **options: Any) -> None:
        self.options = dict(options)

    # --- the contract -------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Task:
        """A task drawn with `rng` only (build it with `self.task(prompt, data)`)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _score(self, task: Task, completion: str) -> float | tuple[float, dict[str, Any]]:
        """Score a clean completion (stripped, non-empty, in `charset`); raising on nonsense scores 0."""
        raise NotImplementedError

    @abc.abstractmethod
    def expert(self, task: Task, turns: Sequence[str] = ()) -> str:
        """The completion that solves `task` (for multi-turn tasks, the next turn after `turns`)."""
        raise NotImplementedError

    def reply(self, task: Task, turns: list[str]) -> str | None:
        """The env's answer to the latest turn, rendered after it in the next prompt; None ends the episode.

        Called only with clean turns (stripped, read up to the stop string) and must be a function of
        `task` and `turns` alone. Single-turn environments need not implement it.
        """
        return None

    def work(self, task: Task) -> str:
        """The expert's steps towards its answer as one line (the scratchpad of the thinking format,
        `envs.thinking`); needed with `max_work_chars`."""
        raise NotImplementedError(f"{self.name} shows no work")

    def _teach(self, name: str, task: Task, turns: Sequence[str]) -> str:
        """What teacher `name` (a key of `teachers`) writes for `task`'s next turn; needed with `teachers`."""
        raise NotImplementedError(f"{self.name}: teacher {name!r} is listed but not implemented")

    def _score_episode(self, task: Task, turns: list[str]) -> float | tuple[float, dict[str, Any]]:
        """Score a whole episode of clean turns; by default the last turn decides."""
        return self._score(task, turns[-1])

    # --- helpers for subclasses ---------------------------------------------------------------
    def task(self, prompt: str, data: dict[str, Any]) -> Task:
        """A `Task` of this env; numpy scalars in `data` become Python numbers."""
        data = json.loads(json.dumps(data, default=_json_default))
        digest = hashlib.blake2b(json.dumps([prompt, data], sort_keys=True).encode(), digest_size=6)
        return Task(self.name, f"{self.name}-{digest.hexdigest()}", prompt, data)

    def int_option(self, key: str, low: int, high: int) -> int:
        """`self.options[key]` checked to be an integer in [low, high]; the error names the option."""
        value = self.options[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise ValueError(
                f"{self.name}: option {key!r} must be an integer in [{low}, {high}], got {value!r}"
            )
        self.options[key] = int(value)
        return int(value)

    # --- what the engine calls ----------------------------------------------------------------
    def teacher(self, name: str = "expert") -> Callable[[Task, Sequence[str]], str]:
        """`teacher(task, turns) -> completion`: the exact `expert`, or one of `teachers`, whose errors are
        systematic (the same mistake on every task of a kind), as a student cannot average them away."""
        if name == "expert":
            return self.expert
        if name not in self.teachers:
            known = ", ".join(["expert", *self.teachers])
            raise ValueError(f"{self.name}: unknown teacher {name!r}; known: {known}")
        return lambda task, turns=(): self._teach(name, task, turns)

    def score(self, task: Task, completion: object) -> float:
        """`score_details(task, completion).value`."""
        return self.score_details(task, completion).value

    def score_details(self, task: Task, completion: object) -> Score:
        """Score one completion; never raises on what the policy wrote (bad input scores 0)."""
        self._check_task(task)
        try:
            text = self._read(completion)
        except _Invalid as e:
            return Score(0.0, {"error": str(e)})
        return _guarded(self._score, task, text)

    def score_episode(self, task: Task, turns: Sequence[object]) -> Score:
        """Score an episode (the policy's turns in order); a bad turn or one past the end scores 0."""
        self._check_task(task)
        if isinstance(turns, (str, bytes)) or not isinstance(turns, Sequence) or not turns:
            return Score(0.0, {"error": "an episode is a non-empty list of turns"})
        if len(turns) > self.max_turns:
            return Score(0.0, {"error": f"{len(turns)} turns, more than max_turns = {self.max_turns}"})
        texts: list[str] = []
        for i, turn in enumerate(turns, 1):
            try:
                texts.append(self._read(turn))
            except _Invalid as e:
                return Score(0.0, {"error": f"turn {i}: {e}"})
            if i < len(turns) and self._reply(task, texts) is None:
                return Score(0.0, {"error": f"turn {i + 1} comes after the end of the episode"})
        return _guarded(self._score_episode, task, texts)

    def prompt_for(self, task: Task, turns: Sequence[object] = ()) -> str | None:
        """The text the policy continues for its next turn, or None once the episode is over.

        The task's prompt, then each clean turn followed by the env's reply. The episode is over after
        `max_turns` turns, a bad turn, or a reply of None.
        """
        self._check_task(task)
        if len(turns) >= self.max_turns:
            return None
        text, texts = task.prompt, []
        for turn in turns:
            try:
                texts.append(self._read(turn))
            except _Invalid:
                return None
            answer = self._reply(task, texts)
            if answer is None:
                return None
            text += texts[-1] + answer
        return text

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"

    # --- internals ----------------------------------------------------------------------------
    def _check_task(self, task: Task) -> None:
        # A wrong task is the caller's bug, not the policy's: say so loudly.
        if not isinstance(task, Task):
            raise TypeError(f"{self.name}: expected a Task, got {type(task).__name__}")
        if task.env != self.name:
            raise ValueError(f"{self.name}: task {task.id!r} belongs to environment {task.env!r}")

    def _read(self, completion: object) -> str:
        """The completion up to its first stop string, stripped; `_Invalid` says why it scores 0."""
        if not isinstance(completion, str):
            raise _Invalid(f"completion is {type(completion).__name__}, not text")
        if len(completion) > self.max_completion_chars:
            raise _Invalid(f"completion is longer than max_completion_chars = {self.max_completion_chars}")
        cut = min((i for i in (completion.find(s) for s in self.stop if s) if i >= 0), default=None)
        text = completion[:cut].strip()
        if not text:
            raise _Invalid("completion is empty")
        if not set(text) <= set(self.charset):
            raise _Invalid("completion has characters outside the environment's charset")
        return text

    def _reply(self, task: Task, texts: list[str]) -> str | None:
        try:
            answer = self.reply(task, list(texts))
        except Exception:  # a reply that fails ends the episode; the checker reports it
            return None
        return answer if isinstance(answer, str) else None


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"task data must be JSON-serialisable, got {type(obj).__name__}")


def _guarded(fn: Callable[..., Any], task: Task, arg: object) -> Score:
    """Run a user's scorer: an exception or a non-number gives 0 (with the error), NaN 0; clip to [0, 1]."""
    try:
        out = fn(task, arg)
        value, details = out if isinstance(out, tuple) else (out, {})
        if not isinstance(value, (int, float, np.number)):
            raise TypeError(f"a score must be a number, got {type(value).__name__}")
        value, details = float(value), dict(details)
    except Exception as e:
        return Score(0.0, {"error": f"{type(e).__name__}: {e}"[:_MAX_ERROR_CHARS]})
    if math.isnan(value):
        return Score(0.0, {**details, "error": "the scorer returned NaN"})
    return Score(min(max(value, 0.0), 1.0), details)


# --- the decorated-function form ---------------------------------------------------------------
def reward_env(
    name: str,
    *,
    expert: Callable[[Task], str],
    score: Callable[[Task, str], float | tuple[float, dict[str, Any]]] | None = None,
    **attributes: Any,
) -> Callable[[Callable[..., tuple[str, dict[str, Any]]]], type[RewardEnv]]:
    """Make a single-turn `RewardEnv` class from a sampling function `fn(rng, *, knob=default, ...)`.

    `fn` returns `(prompt, data)`; its keyword arguments are the env's options (a value must have its
    default's type; `fn` checks the rest, and runs once when the env is made so a bad value fails
    there). `expert(task)` is the solution; `score(task, completion)` defaults to exact match
    with it. `attributes` override class attributes (`max_completion_chars`, `stop`, ...).
    """
    unknown = sorted(set(attributes) - {"max_completion_chars", "max_prompt_chars", "stop", "charset"})
    if unknown:
        raise TypeError(f"reward_env: unknown attribute(s) {', '.join(map(repr, unknown))}")

    def wrap(fn: Callable[..., tuple[str, dict[str, Any]]]) -> type[RewardEnv]:
        params = list(inspect.signature(fn).parameters.values())[1:]
        knobs = {p.name: p.default for p in params}
        if any(p.default is p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            raise TypeError(f"reward_env {name!r}: options after rng must be keyword arguments with defaults")

        def __init__(self: RewardEnv, **options: Any) -> None:
            unknown = sorted(set(options) - set(knobs))
            if unknown:
                raise TypeError(
                    f"unknown option(s) {', '.join(map(repr, unknown))} for environment {name!r}; "
                    f"known options: {', '.join(knobs) or 'none'}"
                )
            for key, value in options.items():
                default = knobs[key]
                if isinstance(default, float) and type(value) is int:
                    options[key] = value = float(value)
                if default is not None and type(value) is not type(default):
                    raise TypeError(f"{name}: option {key!r} must be {type(default).__name__}, got {value!r}")
            RewardEnv.__init__(self, **{**knobs, **options})
            fn(np.random.default_rng(0), **self.options)  # a bad option fails here, not mid-training

        def sample(self: RewardEnv, rng: np.random.Generator) -> Task:
            prompt, data = fn(rng, **self.options)
            return self.task(prompt, data)

        def _score(self: RewardEnv, task: Task, completion: str) -> float | tuple[float, dict[str, Any]]:
            return score(task, completion) if score is not None else float(completion == expert(task))

        def expert_method(self: RewardEnv, task: Task, turns: Sequence[str] = ()) -> str:
            return expert(task)

        namespace = {
            "__init__": __init__,
            "sample": sample,
            "_score": _score,
            "expert": expert_method,
            "__doc__": fn.__doc__,
            "__module__": fn.__module__,
            "__qualname__": fn.__qualname__,  # pickles by reference: the module name now holds the class
            "__signature__": inspect.Signature(params),  # what `envs.make` checks options against
            "name": name,
            **attributes,
        }
        return type(fn.__name__, (RewardEnv,), namespace)

    return wrap


# --- episodes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    """One played task: each turn's prompt and completion, and the episode's score."""

    task: Task
    turns: list[dict[str, str]]
    score: Score


def sample_tasks(env: RewardEnv, n: int, *, seed: int) -> list[Task]:
    """`n` tasks; task `i` depends only on (`seed`, `i`), not on `n` or on how many came before."""
    return [env.sample(np.random.default_rng([seed, i])) for i in range(n)]


def run_episode(
    env: RewardEnv, task: Task, policy: Callable[[str], str] | None = None, *, teacher: str = "expert"
) -> Episode:
    """Play `task` with `policy(prompt) -> completion` (default: the env's `teacher`) and score it."""
    teach = env.teacher(teacher)
    completions: list[str] = []
    turns = []
    while (prompt := env.prompt_for(task, completions)) is not None:
        completion = teach(task, list(completions)) if policy is None else policy(prompt)
        completions.append(completion)
        turns.append({"prompt": prompt, "completion": completion})
    return Episode(task, turns, env.score_episode(task, completions))
