"""Othello (Reversi) on 8x8 bitboards.

Squares are numbered row-major with a1 = 0 in the top-left corner, h1 = 7 and a8 = 56; move text is
the column letter then the row number (`d3`), plus `pass`. Black (X, player 0) moves first. A player
with no legal move passes (and may only then); the game ends when neither side can move, and the
side with more discs wins.

Positions are two Python ints, one 64-bit bitboard per colour. The module-level helpers work on raw
bitboards (`legal_moves`, `flips`, `iter_bits`) so searches can skip the `State` machinery.
"""

from __future__ import annotations

import numpy as np

from envs.core import TERMINAL, Game, GameInfo, State, grid_symmetries

PASS = 64
FULL = (1 << 64) - 1
_NOT_EDGE_COLS = 0x7E7E7E7E7E7E7E7E  # drops the a and h files so shifts cannot wrap across rows
_BLACK_START = (1 << 28) | (1 << 35)  # e4, d5
_WHITE_START = (1 << 27) | (1 << 36)  # d4, e5
_MARKS = ("X", "O")
_TEXT = (*(f"{'abcdefgh'[a % 8]}{a // 8 + 1}" for a in range(64)), "pass")
_PARSE = {t: a for a, t in enumerate(_TEXT)}


def legal_moves(me: int, opp: int) -> int:
    """Bitboard of the squares where the side owning `me` may play."""
    # Kogge-Stone style fill per direction: two single steps then two double steps reach runs of up to
    # 6 opponent discs. Unrolled because this is the innermost loop of every search.
    h = opp & _NOT_EDGE_COLS
    p = h & (h << 1)
    t = h & (me << 1)
    t |= h & (t << 1)
    t |= p & (t << 2)
    t |= p & (t << 2)
    moves = t << 1
    p = h & (h >> 1)
    t = h & (me >> 1)
    t |= h & (t >> 1)
    t |= p & (t >> 2)
    t |= p & (t >> 2)
    moves |= t >> 1
    p = opp & (opp << 8)
    t = opp & (me << 8)
    t |= opp & (t << 8)
    t |= p & (t << 16)
    t |= p & (t << 16)
    moves |= t << 8
    p = opp & (opp >> 8)
    t = opp & (me >> 8)
    t |= opp & (t >> 8)
    t |= p & (t >> 16)
    t |= p & (t >> 16)
    moves |= t >> 8
    p = h & (h << 7)
    t = h & (me << 7)
    t |= h & (t << 7)
    t |= p & (t << 14)
    t |= p & (t << 14)
    moves |= t << 7
    p = h & (h >> 7)
    t = h & (me >> 7)
    t |= h & (t >> 7)
    t |= p & (t >> 14)
    t |= p & (t >> 14)
    moves |= t >> 7
    p = h & (h << 9)
    t = h & (me << 9)
    t |= h & (t << 9)
    t |= p & (t << 18)
    t |= p & (t << 18)
    moves |= t << 9
    p = h & (h >> 9)
    t = h & (me >> 9)
    t |= h & (t >> 9)
    t |= p & (t >> 18)
    t |= p & (t >> 18)
    moves |= t >> 9
    return moves & ~(me | opp) & FULL


def _rays() -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """Per square, the rays towards higher and towards lower square numbers (nearest square first)."""
    up: list[tuple[int, ...]] = []
    down: list[tuple[int, ...]] = []
    for sq in range(64):
        r0, c0 = divmod(sq, 8)
        ups, downs = [], []
        for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1), (0, -1), (-1, 1), (-1, 0), (-1, -1)):
            ray, r, c = 0, r0 + dr, c0 + dc
            while 0 <= r < 8 and 0 <= c < 8:
                ray |= 1 << (8 * r + c)
                r, c = r + dr, c + dc
            # A ray shorter than 2 squares can never flip anything.
            if ray.bit_count() >= 2:
                (ups if (dr, dc) > (0, 0) else downs).append(ray)
        up.append(tuple(ups))
        down.append(tuple(downs))
    return up, down


_UP_RAYS, _DOWN_RAYS = _rays()


def flips(me: int, opp: int, sq: int) -> int:
    """Bitboard of the `opp` discs that a move by `me` on empty square `sq` turns over."""
    flipped = 0
    for ray in _UP_RAYS[sq]:
        stop = ray & ~opp
        if stop:
            first = stop & -stop  # nearest non-opponent square along the ray
            if first & me:
                flipped |= ray & (first - 1)
    for ray in _DOWN_RAYS[sq]:
        stop = ray & ~opp
        if stop:
            first = 1 << (stop.bit_length() - 1)
            if first & me:
                flipped |= ray & -(first << 1)
    return flipped


def iter_bits(bits: int):
    """Square numbers of the set bits, lowest first."""
    while bits:
        low = bits & -bits
        yield low.bit_length() - 1
        bits ^= low


def _planes(bits: int) -> np.ndarray:
    raw = np.frombuffer(bits.to_bytes(8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, bitorder="little").reshape(8, 8)


class OthelloState(State):
    # Boards are kept relative to the side to move so a move is a flip and a swap.
    __slots__ = ("_done", "_me", "_moves", "_opp", "_player")

    def __init__(self, game: Game) -> None:
        super().__init__(game)
        self._me = _BLACK_START
        self._opp = _WHITE_START
        self._player = 0
        self._moves = legal_moves(self._me, self._opp)  # legal-move bitboard of the side to move
        self._done = False

    def current_player(self) -> int:
        return TERMINAL if self._done else self._player

    def boards(self) -> tuple[int, int]:
        """The (black, white) bitboards."""
        return (self._me, self._opp) if self._player == 0 else (self._opp, self._me)

    def legal_actions(self) -> list[int]:
        if self._done:
            return []
        moves = self._moves
        if not moves:
            return [PASS]
        out = []
        while moves:
            low = moves & -moves
            out.append(low.bit_length() - 1)
            moves ^= low
        return out

    def _is_legal(self, action: int) -> bool:
        if 0 <= action < 64:
            return bool(self._moves >> action & 1)
        return action == PASS and not self._moves and not self._done

    def _apply(self, action: int) -> None:
        me, opp = self._me, self._opp
        if action != PASS:
            flipped = flips(me, opp, action)
            me |= flipped | (1 << action)
            opp ^= flipped
        moves = legal_moves(opp, me)
        self._me, self._opp = opp, me
        self._player = 1 - self._player
        self._moves = moves
        # Only a side without moves needs the other side's mobility: it decides pass versus end.
        self._done = not moves and not legal_moves(me, opp)

    def clone(self) -> OthelloState:
        s = OthelloState.__new__(OthelloState)
        s.game = self.game
        s._history = self._history.copy()
        s._me = self._me
        s._opp = self._opp
        s._player = self._player
        s._moves = self._moves
        s._done = self._done
        return s

    def is_terminal(self) -> bool:
        return self._done

    def disc_counts(self) -> tuple[int, int]:
        """(black, white) disc counts."""
        black, white = self.boards()
        return black.bit_count(), white.bit_count()

    def _winner(self) -> int:
        """0 or 1 once the game is over with a winner, -1 for a draw or an unfinished game."""
        if not self._done:
            return -1
        black, white = self.disc_counts()
        return 0 if black > white else 1 if white > black else -1

    def returns(self) -> list[float]:
        winner = self._winner()
        if winner < 0:
            return [0.0, 0.0]
        return [1.0, -1.0] if winner == 0 else [-1.0, 1.0]

    def key(self) -> tuple[int, int, int]:
        black, white = self.boards()
        return (black, white, self._player)

    def observation(self, player: int) -> np.ndarray:
        boards = self.boards()
        return np.stack((_planes(boards[player]), _planes(boards[1 - player])), axis=-1).astype(np.int8)

    def prompt(self) -> str:
        black, white = self.boards()
        rows = []
        for r in range(8):
            cells = []
            for c in range(8):
                bit = 1 << (8 * r + c)
                cells.append("X" if black & bit else "O" if white & bit else ".")
            rows.append(f"{r + 1} " + " ".join(cells))
        winner = self._winner()
        if winner >= 0:
            status = f"{_MARKS[winner]} won"
        elif self._done:
            status = "draw"
        else:
            status = f"{_MARKS[self._player]} to move"
        return "othello\n  a b c d e f g h\n" + "\n".join(rows) + f"\n{status}\n"

    def action_to_text(self, action: int) -> str:
        if not 0 <= action <= PASS:
            raise IndexError(f"othello has no action {action}")
        return _TEXT[action]

    def _parse(self, text: str) -> int | None:
        return _PARSE.get(text)


class Othello(Game):
    """8x8 Othello; X (black, player 0) moves first from the standard four-disc start."""

    name = "othello"
    # 60 placements at most, and every pass is followed by a placement.
    info = GameInfo(num_players=2, num_distinct_actions=65, max_game_length=120, observation_shape=(8, 8, 2))

    def __init__(self) -> None:
        super().__init__()

    def new_initial_state(self) -> OthelloState:
        return OthelloState(self)

    def symmetries(self) -> list[tuple[int, ...]]:
        # the four that keep the starting discs (a quarter turn swaps their colours); a pass stays a pass
        return [(*perm, PASS) for perm in grid_symmetries(8, keep=("r0", "r180", "d", "a"))]

    def state_from_bitboards(self, black: int, white: int, to_move: int = 0) -> OthelloState:
        """A state with the given discs and side to move and an empty history.

        For tests and analysis: the position need not be reachable from the start. If `to_move` has
        no move but the other side does, it must pass; if neither has one the state is terminal.
        """
        if black & white or (black | white) & ~FULL or to_move not in (0, 1):
            raise ValueError("othello: bitboards must be disjoint 64-bit ints and to_move 0 or 1")
        s = OthelloState(self)
        s._me, s._opp = (black, white) if to_move == 0 else (white, black)
        s._player = to_move
        s._moves = legal_moves(s._me, s._opp)
        s._done = not s._moves and not legal_moves(s._opp, s._me)
        return s
