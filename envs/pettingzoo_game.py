"""An existing PettingZoo AEC environment with action masks as a `Game` of this API.

For interop and cross-checks (e.g. `pettingzoo.classic.tictactoe_v3`, `connect_four_v3`), not for search:
each state holds a live environment, and `clone()` deep-copies it whole (about 0.15 ms for
connect_four_v3, several hundred times a native clone), so search over these states is slow.

Actions are the environment's own integer ids and their text is the decimal number ("4"). Player k is
`possible_agents[k]`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

from envs.core import TERMINAL, Game, GameInfo, State

_DIGITS = frozenset("0123456789")


def _copy_env(env: AECEnv) -> AECEnv:
    """A deep copy of an environment and its wrappers that keeps the game in progress.

    Plain `copy.deepcopy` is wrong here: the classic envs are `EzPickle`, which pickles (and so
    deep-copies) an env as its constructor arguments, giving back a fresh one that was never reset.
    """
    memo: dict[int, Any] = {}

    def copy_obj(obj: Any) -> Any:
        if not isinstance(obj, AECEnv) or not hasattr(obj, "__dict__"):
            return copy.deepcopy(obj, memo)
        if id(obj) in memo:
            return memo[id(obj)]
        new = object.__new__(type(obj))
        memo[id(obj)] = new
        for k, v in vars(obj).items():
            new.__dict__[k] = copy_obj(v)
        return new

    return copy_obj(env)


def _mask_of(env: AECEnv, agent: str) -> np.ndarray:
    obs = env.observe(agent)
    if isinstance(obs, dict) and "action_mask" in obs:
        return np.asarray(obs["action_mask"])
    info = env.infos.get(agent, {})
    if "action_mask" in info:
        return np.asarray(info["action_mask"])
    raise TypeError(f"{env}: no action_mask in the observation or info of {agent}")


class PettingZooState(State):
    __slots__ = ("_env", "_legal", "_returns")

    def __init__(self, game: PettingZooGame, env: AECEnv) -> None:
        super().__init__(game)
        self._env = env
        self._returns = [0.0] * game.num_players()
        self._legal: tuple[int, ...] | None = None  # cached until the next move

    def current_player(self) -> int:
        if self.is_terminal():
            return TERMINAL
        return self.game.agents.index(self._env.agent_selection)

    def is_terminal(self) -> bool:
        env = self._env
        return not env.agents or all(env.terminations[a] or env.truncations[a] for a in env.agents)

    def legal_actions(self) -> list[int]:
        return list(self._legal_tuple())

    def _legal_tuple(self) -> tuple[int, ...]:
        if self._legal is None:
            if self.is_terminal():
                self._legal = ()
            else:
                mask = _mask_of(self._env, self._env.agent_selection)
                self._legal = tuple(int(a) for a in np.flatnonzero(mask))
        return self._legal

    def _is_legal(self, action: int) -> bool:
        return action in self._legal_tuple()

    def _apply(self, action: int) -> None:
        env = self._env
        env.step(action)
        self._collect_rewards()
        # An agent that is out while others play on must still be stepped (with None) to leave.
        while not self.is_terminal():
            agent = env.agent_selection
            if not (env.terminations[agent] or env.truncations[agent]):
                break
            env.step(None)
            self._collect_rewards()
        self._legal = None

    def _collect_rewards(self) -> None:
        # AEC semantics: env.rewards holds the last step's rewards, for the agents still in the game.
        rewards = self._env.rewards
        for i, agent in enumerate(self.game.agents):
            self._returns[i] += float(rewards.get(agent, 0.0))

    def clone(self) -> PettingZooState:
        s = PettingZooState.__new__(PettingZooState)
        s.game = self.game
        s._history = self._history.copy()
        s._env = _copy_env(self._env)
        s._returns = self._returns.copy()
        s._legal = self._legal
        return s

    def returns(self) -> list[float]:
        """Rewards summed over the game so far (all zeros before the end for the classic games)."""
        return list(self._returns)

    def _raw_observation(self, player: int) -> np.ndarray:
        obs = self._env.observe(self.game.agents[player])
        return np.asarray(obs["observation"] if isinstance(obs, dict) else obs)

    def key(self) -> tuple:
        """Every agent's observation plus the player to move (exact for perfect-information games)."""
        return (
            self.current_player(),
            *(self._raw_observation(p).tobytes() for p in range(self.game.num_players())),
        )

    def observation(self, player: int) -> np.ndarray:
        return self._raw_observation(player).astype(np.int8)

    def prompt(self) -> str:
        lines = [self.game.name]
        # Drawn from player 0's side so the marks stay put as turns pass: X is player 0's first plane
        # (its own pieces in the classic board games), O the second.
        obs = self._raw_observation(0)
        if obs.ndim == 3 and obs.shape[2] >= 2:
            for row in obs:
                lines.append(" ".join("X" if cell[0] else "O" if cell[1] else "." for cell in row))
        if self.is_terminal():
            lines.append("game over: " + ", ".join(f"player_{i} {r:+g}" for i, r in enumerate(self._returns)))
        else:
            lines.append(f"player_{self.current_player()} to move")
        return "\n".join(lines) + "\n"

    def action_to_text(self, action: int) -> str:
        if not 0 <= action < self.game.num_distinct_actions():
            raise IndexError(f"{self.game.name} has no action {action}")
        return str(int(action))

    def _parse(self, text: str) -> int | None:
        if not text or not _DIGITS.issuperset(text):
            return None
        action = int(text)
        return action if action < self.game.num_distinct_actions() else None


class PettingZooGame(Game):
    """A `Game` whose states drive environments made by `env_fn` (a fresh AEC env per call).

    The env needs a `Discrete` action space and an action mask in its dict observation (or in
    `info["action_mask"]`). `max_game_length` is not enforced; it only sizes buffers.
    """

    def __init__(
        self,
        env_fn: Callable[[], AECEnv],
        *,
        name: str | None = None,
        seed: int | None = None,
        max_game_length: int = 1000,
    ) -> None:
        super().__init__(env_fn=env_fn, name=name, seed=seed, max_game_length=max_game_length)
        self.env_fn = env_fn
        self.seed = seed
        env = env_fn()
        env.reset(seed=seed)
        self.agents: tuple[str, ...] = tuple(env.possible_agents)
        action_space = env.action_space(self.agents[0])
        if not isinstance(action_space, spaces.Discrete) or int(action_space.start) != 0:
            raise TypeError(f"{env}: needs a Discrete action space starting at 0, got {action_space}")
        obs_space = env.observation_space(self.agents[0])
        if isinstance(obs_space, spaces.Dict):
            obs_space = obs_space["observation"]
        self.name = name or env.metadata.get("name") or type(env.unwrapped).__name__
        self.info = GameInfo(
            num_players=len(self.agents),
            num_distinct_actions=int(action_space.n),
            max_game_length=max_game_length,
            observation_shape=tuple(obs_space.shape),
        )
        env.close()

    def new_initial_state(self) -> PettingZooState:
        env = self.env_fn()
        env.reset(seed=self.seed)
        return PettingZooState(self, env)
