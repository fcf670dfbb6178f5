"""Tic-tac-toe. Actions are cells 0-8 row-major; move text is `a1`..`c3` (column letter, row 1 on top)."""

from __future__ import annotations

import numpy as np

from envs.core import TERMINAL, Game, GameInfo, State, grid_symmetries

_LINES = tuple(
    sum(1 << c for c in cells)
    for cells in (
        (0, 1, 2), (3, 4, 5), (6, 7, 8),  # rows
        (0, 3, 6), (1, 4, 7), (2, 5, 8),  # columns
        (0, 4, 8), (2, 4, 6),  # diagonals
    )
)  # fmt: skip
_FULL = (1 << 9) - 1
_MARKS = ("X", "O")
_TEXT = tuple(f"{'abc'[a % 3]}{a // 3 + 1}" for a in range(9))
_PARSE = {t: a for a, t in enumerate(_TEXT)}


def _wins(bits: int) -> bool:
    return any(bits & line == line for line in _LINES)


class TicTacToeState(State):
    __slots__ = ("_boards", "_player", "_winner")

    def __init__(self, game: Game) -> None:
        super().__init__(game)
        self._boards = [0, 0]  # one 9-bit board per player
        self._player = 0
        self._winner = -1

    def current_player(self) -> int:
        return TERMINAL if self.is_terminal() else self._player

    def _occupied(self) -> int:
        return self._boards[0] | self._boards[1]

    def legal_actions(self) -> list[int]:
        if self.is_terminal():
            return []
        occ = self._occupied()
        return [a for a in range(9) if not occ >> a & 1]

    def _is_legal(self, action: int) -> bool:
        return 0 <= action < 9 and not self._occupied() >> action & 1

    def _apply(self, action: int) -> None:
        p = self._player
        self._boards[p] |= 1 << action
        if _wins(self._boards[p]):
            self._winner = p
        self._player = 1 - p

    def clone(self) -> TicTacToeState:
        s = TicTacToeState.__new__(TicTacToeState)
        s.game = self.game
        s._history = self._history.copy()
        s._boards = self._boards.copy()
        s._player = self._player
        s._winner = self._winner
        return s

    def is_terminal(self) -> bool:
        return self._winner >= 0 or self._occupied() == _FULL

    def returns(self) -> list[float]:
        if self._winner < 0:
            return [0.0, 0.0]
        return [1.0, -1.0] if self._winner == 0 else [-1.0, 1.0]

    def key(self) -> tuple[int, int]:
        return (self._boards[0], self._boards[1])

    def observation(self, player: int) -> np.ndarray:
        obs = np.zeros((3, 3, 2), dtype=np.int8)
        for plane, p in enumerate((player, 1 - player)):
            for a in range(9):
                if self._boards[p] >> a & 1:
                    obs[a // 3, a % 3, plane] = 1
        return obs

    def _cell(self, a: int) -> str:
        for p in (0, 1):
            if self._boards[p] >> a & 1:
                return _MARKS[p]
        return "."

    def prompt(self) -> str:
        rows = [f"{r + 1} " + " ".join(self._cell(3 * r + c) for c in range(3)) for r in range(3)]
        if self._winner >= 0:
            status = f"{_MARKS[self._winner]} won"
        elif self.is_terminal():
            status = "draw"
        else:
            status = f"{_MARKS[self._player]} to move"
        return "tictactoe\n  a b c\n" + "\n".join(rows) + f"\n{status}\n"

    def action_to_text(self, action: int) -> str:
        if not 0 <= action < 9:
            raise IndexError(f"tictactoe has no cell {action}")
        return _TEXT[action]

    def _parse(self, text: str) -> int | None:
        return _PARSE.get(text)


class TicTacToe(Game):
    """3x3 noughts and crosses; X (player 0) moves first."""

    name = "tictactoe"
    info = GameInfo(num_players=2, num_distinct_actions=9, max_game_length=9, observation_shape=(3, 3, 2))

    def __init__(self) -> None:
        super().__init__()

    def new_initial_state(self) -> TicTacToeState:
        return TicTacToeState(self)

    def symmetries(self) -> list[tuple[int, ...]]:
        return grid_symmetries(3)  # all eight of the square
