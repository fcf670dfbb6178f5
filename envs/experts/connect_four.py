"""Depth-limited alpha-beta for Connect Four, on raw bitboards (see `envs.connect_four`)."""

from __future__ import annotations

from typing import cast

from envs.connect_four import (
    BOARD_MASK,
    BOTTOM_MASK,
    CENTRE_ORDER,
    COLUMN_MASKS,
    HEIGHT,
    WIDTH,
    ConnectFourState,
    winning_cells,
)
from envs.core import Game, State
from envs.experts.base import Expert

_WIN = 1000  # a win n plies from the root scores _WIN - n; heuristic values stay far below
_INF = 10_000
_EXACT, _LOWER, _UPPER = 0, 1, 2
_CENTRE = COLUMN_MASKS[3]
# Children in centre-out order, with the transposition table's best move (if any) tried first.
_ORDER = {-1: CENTRE_ORDER, **{c: (c, *(o for o in CENTRE_ORDER if o != c)) for c in CENTRE_ORDER}}
_COLUMNS = tuple((c, COLUMN_MASKS[c]) for c in CENTRE_ORDER)
_COLUMN = dict(enumerate(COLUMN_MASKS))


def _window_starts(dc: int, dr: int) -> int:
    """Cells where a four-cell window in direction (dc, dr) starts and stays on the board."""
    return sum(
        1 << ((HEIGHT + 1) * c + r)
        for c in range(WIDTH)
        for r in range(HEIGHT)
        if 0 <= c + 3 * dc < WIDTH and 0 <= r + 3 * dr < HEIGHT
    )


# (bit shift along the line, window starts) for vertical, horizontal and the two diagonals.
_WINDOWS = tuple(
    (shift, _window_starts(dc, dr))
    for shift, dc, dr in ((1, 0, 1), (HEIGHT + 1, 1, 0), (HEIGHT + 2, 1, 1), (HEIGHT, 1, -1))
)


def _lines(p: int, q: int) -> int:
    """Windows of four with no stone of `q` and two (1 point) or three (2 points) stones of `p`."""
    score = 0
    for s, starts in _WINDOWS:
        free = starts & ~(q | q >> s | q >> 2 * s | q >> 3 * s)
        a, b, c, d = p & free, p >> s & free, p >> 2 * s & free, p >> 3 * s & free
        # Bit-sliced sum a+b+c+d per window: `one` is its 1-bit, `two` its 2-bit (2 or 3 stones).
        ab, cd = a ^ b, c ^ d
        one = ab ^ cd
        two = (a & b) ^ (c & d) ^ (ab & cd)
        score += two.bit_count() + (one & two).bit_count()
    return score


def evaluate(cur: int, mask: int) -> int:
    """Heuristic score for the side to move: open twos and threes minus the opponent's, and centre stones."""
    opp = cur ^ mask
    return (
        _lines(cur, opp) - _lines(opp, cur) + 2 * ((cur & _CENTRE).bit_count() - (opp & _CENTRE).bit_count())
    )


class ConnectFourAlphaBeta(Expert):
    """Negamax alpha-beta to `depth` plies with a transposition table; strength knob: `depth`.

    Every node first takes an immediate win, answers a single threat by blocking it (two threats are
    a loss) and never plays beneath a cell where the opponent would complete four, so even depth 1
    sees one ply further than its horizon. At the horizon `evaluate` scores the position by open twos
    and threes (four-cell windows the opponent has no stone in) and centre-column stones.
    Root moves tying for the best score are chosen among at random.
    """

    name = "alphabeta"

    def __init__(self, game: Game, *, depth: int = 4, epsilon: float = 0.0, seed: int | None = None) -> None:
        super().__init__(game, epsilon=epsilon, seed=seed)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self._tt: dict[int, tuple[int, int, int, int]] = {}

    def options(self) -> dict[str, object]:
        return {**super().options(), "depth": self.depth}

    def action_values(self, state: ConnectFourState) -> dict[int, int]:
        """Depth-limited score of every legal move for the player to move (a win n plies ahead: 1000 - n)."""
        return self._root_scores(state, exact=True)

    def _search(self, state: State) -> int:
        scores = self._root_scores(cast(ConnectFourState, state), exact=False)
        best = max(scores.values())
        return self.rng.choice([col for col, score in scores.items() if score == best])

    def _root_scores(self, state: ConnectFourState, exact: bool) -> dict[int, int]:
        cur, mask = state.bitboards()
        self._tt.clear()  # keeps the table to one search's positions
        self.nodes += 1
        opp = cur ^ mask
        possible = (mask + BOTTOM_MASK) & BOARD_MASK
        wins = winning_cells(cur, mask) & possible
        if wins and not exact:
            return {col: _WIN - 1 for col, colmask in _COLUMNS if wins & colmask}
        scores: dict[int, int] = {}
        best = -_INF
        for col, colmask in _COLUMNS:
            move = possible & colmask
            if not move:
                continue
            if wins & move:
                score = _WIN - 1
            else:
                # A window just below the best so far: ties come back exact, worse moves fail low cheaply.
                beta = _INF if exact else 1 - best
                score = -self._negamax(opp, mask | move, self.depth - 1, -_INF, beta, 1)
            scores[col] = score
            best = max(best, score)
        return dict(sorted(scores.items())) if exact else scores

    def _negamax(self, cur: int, mask: int, depth: int, alpha: int, beta: int, ply: int) -> int:
        """Score for the side to move (`cur` its stones, `mask` all stones), `ply` plies below the root."""
        self.nodes += 1
        possible = (mask + BOTTOM_MASK) & BOARD_MASK
        if not possible:
            return 0  # full board
        mine = winning_cells(cur, mask)
        if mine & possible:
            return _WIN - ply - 1
        opp = cur ^ mask
        theirs = winning_cells(opp, mask)
        moves = possible
        forced = theirs & possible
        if forced:
            if forced & (forced - 1):
                return ply + 2 - _WIN  # two threats: one of them wins next move
            moves = forced
        moves &= ~(theirs >> 1)  # playing beneath their winning cell hands it over
        if not moves:
            return ply + 2 - _WIN
        if depth <= 0:
            return evaluate(cur, mask)

        key = cur + mask  # unique: the mask marks each column's height, `cur` the owners below it
        tt = self._tt
        entry = tt.get(key)
        first = -1
        if entry is not None:
            e_depth, value, flag, first = entry
            if e_depth >= depth and (
                flag == _EXACT or (flag == _LOWER and value >= beta) or (flag == _UPPER and value <= alpha)
            ):
                return value
        alpha0 = alpha
        best, best_col = -_INF, -1
        for col in _ORDER[first]:
            move = moves & _COLUMN[col]
            if not move:
                continue
            value = -self._negamax(opp, mask | move, depth - 1, -beta, -alpha, ply + 1)
            if value > best:
                best, best_col = value, col
                if value > alpha:
                    alpha = value
                    if alpha >= beta:
                        break
        flag = _LOWER if best >= beta else _UPPER if best <= alpha0 else _EXACT
        tt[key] = (depth, best, flag, best_col)
        return best
