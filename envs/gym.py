"""Any reward environment as a Gymnasium environment, with text observations and actions.

`reset(seed=...)` samples a task and returns its prompt; `step(completion)` returns the next prompt (the
transcript so far, for multi-turn tasks) with reward 0, or, once the episode is over, an empty observation
with the episode's score as reward, `terminated=True` and the score's details in `info`. A prompt that
would not fit the observation space ends the episode as truncated, with reward 0.

Each reward environment is registered with Gymnasium on first use as `selfplay/<name>-v0`:

    >>> import envs
    >>> env = envs.make_gym("arithmetic", digits=2)
    >>> env.spec.id
    'selfplay/arithmetic-v0'
    >>> obs, info = env.reset(seed=0)
    >>> obs, info["task_id"] == info["task"]["id"]
    ('56*3=', True)
"""

from __future__ import annotations

import copy
from typing import Any

import gymnasium
from gymnasium import spaces

from envs.registry import UnknownEnvError, make, names
from envs.reward import RewardEnv, Task


def gym_id(name: str) -> str:
    """The Gymnasium id of reward environment `name`."""
    return f"selfplay/{name}-v0"


def make_gym(name: str, render_mode: str | None = None, **options: Any) -> gymnasium.Env:
    """`gymnasium.make` of reward environment `name` (registered with Gymnasium on first use)."""
    if name not in names(kind="reward"):
        raise UnknownEnvError(
            f"unknown reward environment {name!r}; known: {', '.join(names(kind='reward'))}"
            + (" (games have a PettingZoo face: envs.make_aec)" if name in names(kind="game") else "")
        )
    if gym_id(name) not in gymnasium.registry:
        gymnasium.register(gym_id(name), entry_point="envs.gym:RewardGymEnv", kwargs={"env": name})
    return gymnasium.make(gym_id(name), render_mode=render_mode, **options)


class RewardGymEnv(gymnasium.Env[str, str]):
    """A Gymnasium face of a `RewardEnv` (an instance, or a registered name with its options)."""

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 1}  # noqa: RUF012 (Gymnasium's convention)

    def __init__(self, env: RewardEnv | str, render_mode: str | None = None, **options: Any) -> None:
        self.env: RewardEnv = make(env, **options) if isinstance(env, str) else env
        if not isinstance(self.env, RewardEnv):
            raise TypeError(f"expected a reward environment, got {self.env!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {', '.join(self.metadata['render_modes'])}, not {render_mode!r}"
            )
        self.render_mode = render_mode
        charset = self.env.charset
        self.observation_space = spaces.Text(self.env.max_prompt_chars, min_length=0, charset=charset)
        self.action_space = spaces.Text(self.env.max_completion_chars, min_length=0, charset=charset)
        self._task: Task | None = None
        self._turns: list[object] = []
        self._text = ""  # the transcript so far, for render()
        self._over = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Sample a task with the env's generator; `options` is unused."""
        super().reset(seed=seed)
        self._task = self.env.sample(self.np_random)
        self._turns, self._over = [], False
        self._text = self._task.prompt
        if self.render_mode == "human":
            self.render()
        return self._task.prompt, self._info()

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._task is None or self._over:
            raise RuntimeError("the episode is over (or never started): call reset()")
        self._turns.append(action)
        prompt = self.env.prompt_for(self._task, self._turns)
        truncated = prompt is not None and prompt not in self.observation_space
        if prompt is not None and not truncated:
            self._text = prompt
            if self.render_mode == "human":
                self.render()
            return prompt, 0.0, False, False, self._info()
        self._over = True
        if truncated:
            info = self._info(error="the next prompt does not fit the observation space")
            return "", 0.0, False, True, info
        score = self.env.score_episode(self._task, self._turns)
        self._text += action if isinstance(action, str) else repr(action)
        if self.render_mode == "human":
            self.render()
        info = self._info(score=score.value, details=copy.deepcopy(score.details))
        return "", score.value, True, False, info

    def render(self) -> str | None:
        if self.render_mode is None:
            gymnasium.logger.warn("You are calling render method without specifying any render mode.")
            return None
        if self.render_mode == "ansi":
            return self._text
        print(self._text)
        return None

    def _info(self, **extra: Any) -> dict[str, Any]:
        # New objects on every call: callers keep infos (Gymnasium's checker insists).
        assert self._task is not None
        task = {"id": self._task.id, "prompt": self._task.prompt, "data": copy.deepcopy(self._task.data)}
        return {"task_id": self._task.id, "task": task, "turn": len(self._turns), **extra}
