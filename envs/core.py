"""The game contract: an OpenSpiel-style `Game` / `State` pair with a text face.

Search, actors and every ecosystem face touch a game only through these methods, so a new game is a
subclass of each with the abstract methods filled in. Rules live here in plain Python; no torch.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TERMINAL = -4
"""`current_player()` of a finished game (the value OpenSpiel uses)."""


class IllegalMoveError(ValueError):
    """An action or move text that is not legal in the state it was given to.

    The state is left unchanged. `move` is what was asked for, `legal` the legal moves as text.
    """

    def __init__(
        self,
        game: str,
        move: object,
        legal: Sequence[str],
        reason: str = "is not a legal move",
        described: str | None = None,
    ):
        self.game = game
        self.move = move
        self.legal = list(legal)
        listed = ", ".join(self.legal) if self.legal else "none (the game is over)"
        super().__init__(f"{game}: {described or repr(move)} {reason}; legal moves: {listed}")


@dataclass(frozen=True)
class GameInfo:
    """Static facts about a game that sizes buffers and action heads."""

    num_players: int
    num_distinct_actions: int
    max_game_length: int
    observation_shape: tuple[int, ...]


class Game(abc.ABC):
    """A game definition: a factory of initial states plus static facts."""

    name: str = ""
    info: GameInfo

    def __init__(self, **options: object) -> None:
        self.options = dict(options)

    @abc.abstractmethod
    def new_initial_state(self) -> State:
        raise NotImplementedError

    def num_players(self) -> int:
        return self.info.num_players

    def num_distinct_actions(self) -> int:
        return self.info.num_distinct_actions

    def max_game_length(self) -> int:
        return self.info.max_game_length

    def observation_shape(self) -> tuple[int, ...]:
        return self.info.observation_shape

    def symmetries(self) -> list[tuple[int, ...]]:
        """The game's symmetries as action permutations (`perm[a]` is the image of action `a`), the
        identity first: maps under which the rules and the initial position are invariant, so that a game
        replayed with every action mapped is the symmetric game (`State.transformed`). Training uses them
        as augmentation. The default: the identity alone."""
        return [tuple(range(self.num_distinct_actions()))]

    def board_features(self) -> dict[str, str]:
        """Extra planes the board face can add to the stones (as AlphaGo's input features: facts the rules
        compute cheaply that a small network would spend its training learning), by name, each with what
        it shows: `State.planes(features)`. The default: none."""
        return {}

    def check_board_features(self, features: Sequence[str]) -> None:
        """`ValueError` naming any feature this game does not offer."""
        offered = self.board_features()
        unknown = [f for f in features if f not in offered]
        if unknown:
            known = ", ".join(offered) or "none"
            raise ValueError(
                f"{self.name} offers no board feature {', '.join(map(repr, unknown))}; known: {known}"
            )
        if len(set(features)) != len(features):
            raise ValueError(f"board features named twice: {list(features)}")

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"


class State(abc.ABC):
    """A position plus the path that led to it.

    Subclasses implement the rules (`_is_legal`, `_apply`, ...) and the text face; the public
    `apply_action` / `text_to_action` here add the checks and the history so games cannot forget them.
    """

    __slots__ = ("_history", "game")

    def __init__(self, game: Game) -> None:
        self.game = game
        self._history: list[int] = []

    # --- rules, implemented by each game -----------------------------------------------------
    @abc.abstractmethod
    def current_player(self) -> int:
        """The player to move, or `TERMINAL` once the game is over."""
        raise NotImplementedError

    @abc.abstractmethod
    def legal_actions(self) -> list[int]:
        """Legal actions in increasing order; empty when terminal."""
        raise NotImplementedError

    @abc.abstractmethod
    def _is_legal(self, action: int) -> bool:
        raise NotImplementedError

    @abc.abstractmethod
    def _apply(self, action: int) -> None:
        """Play a legal action (already checked)."""
        raise NotImplementedError

    @abc.abstractmethod
    def clone(self) -> State:
        raise NotImplementedError

    @abc.abstractmethod
    def is_terminal(self) -> bool:
        raise NotImplementedError

    @abc.abstractmethod
    def returns(self) -> list[float]:
        """One value per player, summing to zero; all zeros before the end."""
        raise NotImplementedError

    def terminal_moves(self) -> dict[int, list[float]]:
        """The legal moves that end the game, each with the returns it ends with (the search proves
        positions with them). This default plays every move on a clone; a game may answer from its
        rules faster."""
        out = {}
        for a in self.legal_actions():
            s = self.clone()
            s._apply(a)
            if s.is_terminal():
                out[a] = s.returns()
        return out

    @abc.abstractmethod
    def key(self) -> object:
        """A hashable identity of the position (not the path), for tables and counting.

        It must include the player to move wherever the board alone does not determine it (passes).
        """
        raise NotImplementedError

    @abc.abstractmethod
    def observation(self, player: int) -> np.ndarray:
        """The position from `player`'s side as int8 planes of `game.observation_shape()`."""
        raise NotImplementedError

    # --- text face ----------------------------------------------------------------------------
    @abc.abstractmethod
    def prompt(self) -> str:
        """The position as the language model reads it, ending with whose turn it is."""
        raise NotImplementedError

    def status(self) -> str:
        """The prompt's last line (whose turn it is, or how the game ended), with its newline: all the
        text of the board face, whose board is `planes()`. Games may answer it without a whole prompt."""
        return self.prompt().rstrip("\n").rsplit("\n", 1)[-1] + "\n"

    def planes(self, features: Sequence[str] = ()) -> np.ndarray:
        """The board face: the position as float32 planes (C, H, W) from the side of the player to move
        (`observation` of that player, channels first; for games whose observation is (H, W, C)), then
        the planes of each of `features` (`Game.board_features`), in order."""
        obs = self.observation(self.current_player())
        stones = np.ascontiguousarray(obs.transpose(2, 0, 1), dtype=np.float32)
        if not features:
            return stones
        return np.concatenate([stones, *(self.feature_planes(f) for f in features)])

    def feature_planes(self, feature: str) -> np.ndarray:
        """The float32 planes (k, H, W) of one of the game's `board_features`."""
        raise ValueError(f"{self.game.name} offers no board feature {feature!r}")

    @abc.abstractmethod
    def action_to_text(self, action: int) -> str:
        """The move as written; raises IndexError for ids outside [0, num_distinct_actions)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _parse(self, text: str) -> int | None:
        """Normalised move text to an action id (legal or not), or None if it names no move."""
        raise NotImplementedError

    def text_to_action(self, text: str) -> int:
        """Parse a move; raises `IllegalMoveError` for text that is no legal move here."""
        if not isinstance(text, str):
            raise IllegalMoveError(self.game.name, text, self.legal_texts(), "is not move text")
        action = self._parse(text.strip().lower())
        if action is None:
            raise IllegalMoveError(self.game.name, text, self.legal_texts(), "is not a move of this game")
        if self.is_terminal() or not self._is_legal(action):
            raise IllegalMoveError(self.game.name, text, self.legal_texts())
        return action

    def legal_texts(self) -> list[str]:
        return [self.action_to_text(a) for a in self.legal_actions()]

    # --- shared behaviour ---------------------------------------------------------------------
    def apply_action(self, action: int) -> None:
        """Play `action`; raises `IllegalMoveError` (state unchanged) if it is not legal here."""
        if (
            isinstance(action, bool)
            or not isinstance(action, (int, np.integer))
            or self.is_terminal()
            or not self._is_legal(int(action))
        ):
            raise IllegalMoveError(
                self.game.name, action, self.legal_texts(), described=self._describe(action)
            )
        action = int(action)
        self._apply(action)
        self._history.append(action)

    def _describe(self, action: object) -> str:
        is_int = isinstance(action, (int, np.integer)) and not isinstance(action, bool)
        if is_int and 0 <= action < self.game.num_distinct_actions():
            return f"action {action} ({self.action_to_text(int(action))})"
        return f"action {action!r}"

    def history(self) -> list[int]:
        return list(self._history)

    def transformed(self, perm: Sequence[int]) -> State:
        """This position's image under a symmetry of the game (one of `Game.symmetries`): the game
        replayed from the start with every action mapped."""
        s = self.game.new_initial_state()
        for a in self._history:
            s.apply_action(perm[a])
        return s

    def move_number(self) -> int:
        return len(self._history)

    def num_players(self) -> int:
        return self.game.num_players()

    def __str__(self) -> str:
        return self.prompt()

    def __repr__(self) -> str:
        return f"<{self.game.name} state after {self._history}>"


def grid_symmetries(
    size: int, *, keep: Sequence[str] = ("r0", "r90", "r180", "r270", "h", "v", "d", "a")
) -> list:
    """Action permutations of a `size` x `size` grid whose action is `row * size + col`: the rotations
    (`r0` is the identity), the horizontal and vertical flips and the two diagonal reflections, those
    named in `keep` (for games whose start is not invariant under all eight)."""
    n = size - 1
    maps = {
        "r0": lambda r, c: (r, c),
        "r90": lambda r, c: (c, n - r),
        "r180": lambda r, c: (n - r, n - c),
        "r270": lambda r, c: (n - c, r),
        "h": lambda r, c: (r, n - c),
        "v": lambda r, c: (n - r, c),
        "d": lambda r, c: (c, r),
        "a": lambda r, c: (n - c, n - r),
    }
    out = []
    for name in keep:
        perm = [0] * (size * size)
        for a in range(size * size):
            r, c = maps[name](a // size, a % size)
            perm[a] = r * size + c
        out.append(tuple(perm))
    return out
