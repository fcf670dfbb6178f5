"""Connect Four on a 6x7 board. Actions are columns 0-6; move text is the column letter `a`..`g`.

Positions are bitboards in the Pascal Pons layout: 7 bits per column (bit `7 * col + row`, row 0 at the
bottom), the 6 cells plus an always-empty sentinel bit on top so that shifts never carry a line from
one column into the next. The module-level helpers work on raw `(current, mask)` pairs, where `current`
holds the stones of the player to move and `mask` all stones; search code uses them directly instead
of cloning states.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from envs.core import TERMINAL, Game, GameInfo, State

WIDTH = 7
HEIGHT = 6
_H1 = HEIGHT + 1

BOTTOM_MASKS = tuple(1 << (_H1 * c) for c in range(WIDTH))
TOP_MASKS = tuple(1 << (HEIGHT - 1 + _H1 * c) for c in range(WIDTH))
COLUMN_MASKS = tuple(((1 << HEIGHT) - 1) << (_H1 * c) for c in range(WIDTH))
BOTTOM_MASK = sum(BOTTOM_MASKS)
BOARD_MASK = sum(COLUMN_MASKS)
CENTRE_ORDER = (3, 2, 4, 1, 5, 0, 6)

_TOP_ALL = sum(TOP_MASKS)
# Legal columns for every combination of full columns: one dict lookup instead of a 7-step scan.
_LEGAL = {
    sum(TOP_MASKS[c] for c in range(WIDTH) if full >> c & 1): tuple(
        c for c in range(WIDTH) if not full >> c & 1
    )
    for full in range(1 << WIDTH)
}
_MARKS = ("X", "O")
_TEXT = "abcdefg"
_PARSE = {t: a for a, t in enumerate(_TEXT)}
_HEADER = "connect_four\n" + " ".join(_TEXT) + "\n"
# Bit index of each cell with row 0 at the top, for observations and the prompt.
_SHIFTS = np.array([[_H1 * c + HEIGHT - 1 - r for c in range(WIDTH)] for r in range(HEIGHT)], dtype=np.int64)
_CELLS = tuple(tuple(1 << int(b) for b in row) for row in _SHIFTS)

# `_winner` values besides a player index.
_ONGOING = -1
_DRAW = 2


def _unpack(boards: list[int]) -> np.ndarray:
    """Bitboards as float32 planes (len(boards), HEIGHT, WIDTH), row 0 at the top."""
    return ((np.array(boards, dtype=np.int64)[:, None, None] >> _SHIFTS) & 1).astype(np.float32)


def playable(mask: int) -> int:
    """The lowest empty cell of every column that is not full."""
    return (mask + BOTTOM_MASK) & BOARD_MASK


def aligned(stones: int) -> bool:
    """Whether `stones` contain four in a row (vertical, horizontal or either diagonal)."""
    m = stones & (stones >> 1)
    if m & (m >> 2):
        return True
    m = stones & (stones >> _H1)
    if m & (m >> 2 * _H1):
        return True
    m = stones & (stones >> HEIGHT)
    if m & (m >> 2 * HEIGHT):
        return True
    m = stones & (stones >> (_H1 + 1))
    return bool(m & (m >> 2 * (_H1 + 1)))


def winning_cells(stones: int, mask: int) -> int:
    """Empty cells (playable now or not) that would complete four for the owner of `stones`."""
    p = stones
    r = (p << 1) & (p << 2) & (p << 3)  # vertical: only upwards can be empty
    for s in (_H1, HEIGHT, _H1 + 1):  # horizontal and the two diagonals
        a = (p << s) & (p << 2 * s)
        r |= a & (p << 3 * s)
        r |= a & (p >> s)
        b = (p >> s) & (p >> 2 * s)
        r |= b & (p << s)
        r |= b & (p >> 3 * s)
    return r & (BOARD_MASK ^ mask)


class ConnectFourState(State):
    __slots__ = ("_cur", "_mask", "_player", "_winner")

    def __init__(self, game: Game) -> None:
        super().__init__(game)
        self._cur = 0  # stones of the player to move
        self._mask = 0  # all stones
        self._player = 0
        self._winner = _ONGOING  # or the winner, or _DRAW

    def bitboards(self) -> tuple[int, int]:
        """`(stones of the player to move, all stones)` for the module-level helpers."""
        return self._cur, self._mask

    def current_player(self) -> int:
        return self._player if self._winner == _ONGOING else TERMINAL

    def legal_actions(self) -> list[int]:
        if self._winner != _ONGOING:
            return []
        return list(_LEGAL[self._mask & _TOP_ALL])

    def _is_legal(self, action: int) -> bool:
        return 0 <= action < WIDTH and not self._mask & TOP_MASKS[action]

    def _apply(self, action: int) -> None:
        mask = self._mask
        opp = self._cur ^ mask
        mask |= mask + BOTTOM_MASKS[action]  # the carry lands on the column's lowest empty cell
        self._cur = opp
        self._mask = mask
        if aligned(opp ^ mask):
            self._winner = self._player
        elif mask == BOARD_MASK:
            self._winner = _DRAW
        self._player ^= 1

    def clone(self) -> ConnectFourState:
        s = ConnectFourState.__new__(ConnectFourState)
        s.game = self.game
        s._history = self._history.copy()
        s._cur = self._cur
        s._mask = self._mask
        s._player = self._player
        s._winner = self._winner
        return s

    def is_terminal(self) -> bool:
        return self._winner != _ONGOING

    def terminal_moves(self) -> dict[int, list[float]]:
        if self._winner != _ONGOING:
            return {}
        wins = winning_cells(self._cur, self._mask) & playable(self._mask)
        if wins:
            won = [1.0, -1.0] if self._player == 0 else [-1.0, 1.0]
            return {c: won for c in range(WIDTH) if wins & COLUMN_MASKS[c]}
        if (self._mask ^ BOARD_MASK).bit_count() == 1:  # the last empty cell: a draw
            return {self.legal_actions()[0]: [0.0, 0.0]}
        return {}

    def returns(self) -> list[float]:
        if self._winner == 0:
            return [1.0, -1.0]
        if self._winner == 1:
            return [-1.0, 1.0]
        return [0.0, 0.0]

    def _stones(self, player: int) -> int:
        # `_player` keeps alternating after the end, so `_cur` is always its stones.
        return self._cur if player == self._player else self._cur ^ self._mask

    def key(self) -> tuple[int, int]:
        return (self._stones(0), self._stones(1))

    def observation(self, player: int) -> np.ndarray:
        obs = np.empty((HEIGHT, WIDTH, 2), dtype=np.int8)
        obs[:, :, 0] = (np.int64(self._stones(player)) >> _SHIFTS) & 1
        obs[:, :, 1] = (np.int64(self._stones(1 - player)) >> _SHIFTS) & 1
        return obs

    def prompt(self) -> str:
        x = self._stones(0)
        rows = [" ".join("X" if x & b else "O" if self._mask & b else "." for b in row) for row in _CELLS]
        return _HEADER + "\n".join(rows) + "\n" + self.status()

    def status(self) -> str:
        if self._winner == _ONGOING:
            return f"{_MARKS[self._player]} to move\n"
        return "draw\n" if self._winner == _DRAW else f"{_MARKS[self._winner]} won\n"

    def planes(self, features: Sequence[str] = ()) -> np.ndarray:
        # Called for every position a search evaluates: the config checked `features` once.
        me, them = self._cur, self._cur ^ self._mask  # `_cur` holds the stones of the player to move
        boards = [me, them]
        for f in features:
            boards += self._feature_boards(f)
        return _unpack(boards)

    def feature_planes(self, feature: str) -> np.ndarray:
        return _unpack(self._feature_boards(feature))

    def _feature_boards(self, feature: str) -> list[int]:
        me, mask = self._cur, self._mask
        if feature == "threats":
            return [winning_cells(me, mask), winning_cells(me ^ mask, mask)]
        if feature == "playable":
            return [playable(mask) if self._winner == _ONGOING else 0]
        return super().feature_planes(feature)  # raises, naming it

    def action_to_text(self, action: int) -> str:
        if not 0 <= action < WIDTH:
            raise IndexError(f"connect_four has no column {action}")
        return _TEXT[action]

    def _parse(self, text: str) -> int | None:
        return _PARSE.get(text)


class ConnectFour(Game):
    """Connect Four, 6 rows by 7 columns; X (player 0) moves first."""

    name = "connect_four"
    info = GameInfo(
        num_players=2,
        num_distinct_actions=WIDTH,
        max_game_length=WIDTH * HEIGHT,
        observation_shape=(HEIGHT, WIDTH, 2),
    )

    def board_features(self) -> dict[str, str]:
        return {
            "threats": "2 planes: the empty cells where the player to move, then the opponent, would "
            "complete four (playable now or not)",
            "playable": "1 plane: the cell each legal move would fill",
        }

    def __init__(self) -> None:
        super().__init__()

    def new_initial_state(self) -> ConnectFourState:
        return ConnectFourState(self)

    def symmetries(self) -> list[tuple[int, ...]]:
        return [tuple(range(WIDTH)), tuple(reversed(range(WIDTH)))]  # and the mirror image
