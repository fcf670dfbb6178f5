"""Any `envs.core.Game` as a PettingZoo AEC environment, with the conventions of PettingZoo's classic envs.

Agents are "player_0", "player_1", ... (the suffix is our player id). Each observation is a dict with the
game's int8 planes under "observation" and an int8 "action_mask" that is all zeros for every agent but the
one to move (and for everyone once the game is over). Rewards come only at the end, as `state.returns()`.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv

from envs.core import Game, State


class GameAECEnv(AECEnv):
    """A PettingZoo `AECEnv` face of `game`. Illegal actions raise `envs.IllegalMoveError`."""

    def __init__(self, game: Game, render_mode: str | None = None):
        super().__init__()
        # Per instance, because the name depends on the game.
        self.metadata = {
            "name": f"{game.name}_v0",
            "render_modes": ["human", "ansi"],
            "is_parallelizable": False,
        }
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.game = game
        self.render_mode = render_mode

        self.possible_agents = [f"player_{i}" for i in range(game.num_players())]
        self._player = {agent: i for i, agent in enumerate(self.possible_agents)}
        n = game.num_distinct_actions()
        # One space object per agent, returned as is: api_test checks identity (space seeding relies on it).
        self.action_spaces = {agent: spaces.Discrete(n) for agent in self.possible_agents}
        self.observation_spaces = {
            agent: spaces.Dict(
                {
                    "observation": spaces.Box(0, 1, game.observation_shape(), np.int8),
                    "action_mask": spaces.Box(0, 1, (n,), np.int8),
                }
            )
            for agent in self.possible_agents
        }
        # Usable before the first reset, like the classic envs.
        self._start()

    # --- AEC API --------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Start a new game. Games here are deterministic, so `seed` and `options` change nothing."""
        self._start()

    def step(self, action: int | None) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            return self._was_dead_step(action)
        # Raises IllegalMoveError before anything here has changed.
        self.game_state.apply_action(action)

        # The agent has seen its cumulative reward through last(); it restarts now it acts.
        self._cumulative_rewards[agent] = 0
        self._clear_rewards()
        if self.game_state.is_terminal():
            for a, r in zip(self.possible_agents, self.game_state.returns(), strict=True):
                self.rewards[a] = float(r)
            self.terminations = dict.fromkeys(self.agents, True)
            # Dead agents are then stepped in turn, starting after the one that just moved.
            self.agent_selection = self.possible_agents[(self._player[agent] + 1) % len(self.possible_agents)]
        else:
            self.agent_selection = self.possible_agents[self.game_state.current_player()]
        self._accumulate_rewards()

        if self.render_mode == "human":
            self.render()

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        player = self._player[agent]
        mask = np.zeros(self.game.num_distinct_actions(), dtype=np.int8)
        if self.game_state.current_player() == player:  # never true once terminal
            mask[self.game_state.legal_actions()] = 1
        obs = np.asarray(self.game_state.observation(player), dtype=np.int8)
        return {"observation": obs, "action_mask": mask}

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def render(self) -> str | None:
        if self.render_mode is None:
            gymnasium.logger.warn("You are calling render method without specifying any render mode.")
            return None
        text = self.game_state.prompt()
        if self.render_mode == "ansi":
            return text
        print(text)
        return None

    def close(self) -> None:
        pass

    # --- helpers --------------------------------------------------------------------------------
    def _start(self) -> None:
        # Not `self.state`: AECEnv.state() is the (optional) global-state method.
        self.game_state: State = self.game.new_initial_state()
        self.agents = self.possible_agents[:]
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {agent: {} for agent in self.agents}
        self._skip_agent_selection = None
        self.agent_selection = self.possible_agents[self.game_state.current_player()]
