"""Othello alpha-beta: negamax on raw bitboards with a square-weight plus mobility evaluation."""

from __future__ import annotations

from envs.core import Game, State
from envs.experts.base import Expert
from envs.othello import flips, legal_moves

# The classic square weights: corners are stable, X- and C-squares next to an empty corner give it away.
WEIGHTS = (
    120, -20,  20,   5,   5,  20, -20, 120,
    -20, -40,  -5,  -5,  -5,  -5, -40, -20,
     20,  -5,  15,   3,   3,  15,  -5,  20,
      5,  -5,   3,   3,   3,   3,  -5,   5,
      5,  -5,   3,   3,   3,   3,  -5,   5,
     20,  -5,  15,   3,   3,  15,  -5,  20,
    -20, -40,  -5,  -5,  -5,  -5, -40, -20,
    120, -20,  20,   5,   5,  20, -20, 120,
)  # fmt: skip
MOBILITY = 15  # per legal move more than the opponent
WIN = 100_000  # above any evaluation; the disc margin is added so bigger wins rank higher

# One mask per distinct weight, best first: evaluation is a few popcounts and move ordering tries
# corners first and X-squares last.
_GROUPS = tuple(
    (w, sum(1 << sq for sq in range(64) if WEIGHTS[sq] == w)) for w in sorted(set(WEIGHTS), reverse=True)
)
_ORDER = tuple(mask for _, mask in _GROUPS)


def _final(me: int, opp: int) -> int:
    diff = me.bit_count() - opp.bit_count()
    return diff + WIN if diff > 0 else diff - WIN if diff < 0 else 0


# Per corner: the corner bit and its X- and C-squares (all weighted -20 or -40 in WEIGHTS).
_CORNERS = tuple(
    (1 << c, sum(1 << x for x in xs), 1 << xs[2])
    for c, xs in ((0, (1, 8, 9)), (7, (6, 15, 14)), (56, (57, 48, 49)), (63, (62, 55, 54)))
)


def evaluate(me: int, opp: int, my_moves: int, opp_moves: int) -> int:
    """Static value for the side owning `me` (integer, so ties are exact)."""
    score = MOBILITY * (my_moves.bit_count() - opp_moves.bit_count())
    for w, mask in _GROUPS:
        score += w * ((me & mask).bit_count() - (opp & mask).bit_count())
    occupied = me | opp
    for corner, near, x_square in _CORNERS:
        # Once its corner is taken an X- or C-square can no longer give it away: drop the penalty.
        if occupied & corner:
            score += 20 * ((me & near).bit_count() - (opp & near).bit_count())
            score += 20 * (bool(me & x_square) - bool(opp & x_square))
    return score


class OthelloAlphaBeta(Expert):
    """Fixed-depth negamax with alpha-beta pruning; ties at the root are broken at random.

    A pass does not use up depth (it is forced, and the opponent then has a move), and a finished
    game scores `WIN` plus the disc margin, so the search plays for the biggest win it can see.
    """

    name = "alphabeta"

    def __init__(self, game: Game, *, depth: int = 3, epsilon: float = 0.0, seed: int | None = None) -> None:
        super().__init__(game, epsilon=epsilon, seed=seed)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"expert {self.name!r}: depth must be an int >= 1, got {depth!r}")
        self.depth = depth

    def options(self) -> dict[str, object]:
        return {"epsilon": self.epsilon, "depth": self.depth}

    def root_scores(self, state: State) -> dict[int, int]:
        """Each legal square's value to the side to move, exact for the best ones and an upper bound
        for the rest (they were cut off against the best so far)."""
        black, white = state.boards()
        me, opp = (black, white) if state.current_player() == 0 else (white, black)
        self.nodes += 1
        scores: dict[int, int] = {}
        best = -2 * WIN
        moves = legal_moves(me, opp)
        for group in _ORDER:
            m = moves & group
            while m:
                low = m & -m
                m ^= low
                sq = low.bit_length() - 1
                f = flips(me, opp, sq)
                # Window (best - 1, inf): a move that ties the best still gets its exact score.
                v = -self._negamax(opp ^ f, me | f | low, self.depth - 1, -2 * WIN, 1 - best)
                scores[sq] = v
                if v > best:
                    best = v
        return scores

    def _search(self, state: State) -> int:
        scores = self.root_scores(state)
        best = max(scores.values())
        return self.rng.choice([sq for sq, v in scores.items() if v == best])

    def _negamax(self, me: int, opp: int, depth: int, alpha: int, beta: int) -> int:
        self.nodes += 1
        moves = legal_moves(me, opp)
        if not depth:
            opp_moves = legal_moves(opp, me)
            if not moves and not opp_moves:
                return _final(me, opp)
            return evaluate(me, opp, moves, opp_moves)
        if not moves:
            if not legal_moves(opp, me):
                return _final(me, opp)
            return -self._negamax(opp, me, depth, -beta, -alpha)
        best = -2 * WIN
        depth -= 1
        for group in _ORDER:
            m = moves & group
            while m:
                low = m & -m
                m ^= low
                f = flips(me, opp, low.bit_length() - 1)
                v = -self._negamax(opp ^ f, me | f | low, depth, -beta, -alpha)
                if v > best:
                    best = v
                    if v > alpha:
                        alpha = v
                        if alpha >= beta:
                            return best
        return best
