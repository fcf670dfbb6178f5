"""AlphaZero-style PUCT search over many games at once, with any batched evaluator as its network.

`search(trees, evaluate, simulations=...)` is a pure function over `Tree`s (one per game) that returns one
`SearchOutput` per tree. It runs in waves: every unfinished tree descends to a leaf (or `leaves_per_tree`
leaves, spread by virtual loss), then ONE `evaluate()` call scores the leaves of all trees together, then
every path is backed up. So a network call sees up to `len(trees) * leaves_per_tree` positions.

Nodes. A node owns a clone of its position, made once when the edge into it is first taken. An expanded
node keeps numpy arrays over its legal actions: `prior` (network probabilities), `N` (visit counts) and
`W` (value sums). Edge statistics live in the parent and are from the view of the parent's player to
move, so selection at a node reads only its own arrays; `vsum / n` is the node's own value for its player
to move (its evaluation plus everything backed up through it). Backup turns a leaf's value into a
per-player returns vector and adds to each edge the entry of that node's `current_player()`, so nothing
assumes the players alternate (a game may give one player two moves in a row); with N > 2 players the
player to move gets v and the others -v/(n-1).

Selection is PUCT: argmax_a Q(a) + c_puct * P(a) * sqrt(n) / (1 + N(a)), with n the node's own visit count
(so a node's first pick follows the prior) and Q = 0 for unvisited actions (AlphaZero; no first-play
urgency). The root is evaluated before its simulations, which do not count it: a fresh tree searched with
`simulations=k` ends with k root-child visits. Terminal leaves are scored by `state.returns()` and never
reach the evaluator; a leaf reached twice in one wave is evaluated once and both paths back up its value.

Proofs (MCTS-Solver, Winands et al. 2008). Expanding a node also asks its position which moves end the game
(`State.terminal_moves`), so such a move is seen at once, whatever its prior. A node is proven (its exact
returns known) when it is terminal, when a proven child wins for its player to move (value 1, the best there
is), or when every child is proven (the best of them). Selection always takes a proven win and never a proven
loss (unless nothing else is left), proofs travel up with each backup, and the output's `policy` puts all its
mass on a proven win or none on a proven loss: a small search never misses a move that wins at once, nor lets
the opponent win at once when it can stop it, even against its network's prior. Values lie in [-1, 1].
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agents.policy import Evaluation
from envs.core import State
from envs.experts.mcts import random_rollout

Evaluator = Callable[[Sequence[State]], list[Evaluation]]
"""Scores non-terminal states (batched); `Policy.evaluate` fits. It must not mutate the states."""


class _Node:
    __slots__ = (
        "N",
        "W",
        "actions",
        "children",
        "known",
        "n",
        "player",
        "prior",
        "proven",
        "returns",
        "solved",
        "state",
        "vsum",
        "waiting",
    )

    def __init__(self, state: State) -> None:
        self.state = state  # owned: never shared with another node or the caller
        self.player = state.current_player()
        self.returns = state.returns() if state.is_terminal() else None  # terminal <=> not None
        self.proven: list[float] | None = self.returns  # exact returns, once known
        self.actions: list[int] | None = None  # set on expansion
        self.prior = self.N = self.W = None
        self.solved: np.ndarray | None = None  # (A,) each proven child's value for `player`, else nan
        self.known = 0  # proven children
        self.children: list[_Node | None] = []
        self.n = 0  # visits: its own evaluation plus every simulation through it
        self.vsum = 0.0  # value sum for `player`
        self.waiting: list[list[tuple[_Node, int]]] | None = None  # paths awaiting this leaf's evaluation

    def expand(self, e: Evaluation) -> None:
        self.actions = list(e.actions)
        prior = np.asarray(e.probs, dtype=np.float64)
        self.prior = prior / prior.sum()
        self.N = np.zeros(len(self.actions))
        self.W = np.zeros(len(self.actions))
        self.children = [None] * len(self.actions)
        self.solved = np.full(len(self.actions), np.nan)
        ends = self.state.terminal_moves()  # every move that ends the game, whatever its prior
        for i, a in enumerate(self.actions):
            if a in ends:
                self.prove(i, self.child(i).proven)

    def prove(self, i: int, returns: Sequence[float]) -> None:
        """Child `i` is proven (`returns`); prove this node too if that decides it: a child that wins for
        the player to move, or every child proven (the best of them)."""
        self.solved[i] = returns[self.player]
        self.known += 1
        if self.proven is None and (self.solved[i] >= 1 or self.known == len(self.actions)):
            best = int(np.where(np.isnan(self.solved), -np.inf, self.solved).argmax())
            self.proven = self.children[best].proven

    def child(self, i: int) -> _Node:
        c = self.children[i]
        if c is None:
            s = self.state.clone()
            s.apply_action(self.actions[i])
            c = self.children[i] = _Node(s)
        return c


class Tree:
    """Search tree of one game, rooted at a position; kept between moves for tree reuse."""

    def __init__(self, state: State) -> None:
        self._root = _Node(state.clone())

    @property
    def state(self) -> State:
        """The root position (do not mutate)."""
        return self._root.state

    @property
    def visits(self) -> int:
        """Visits of the root: 1 for its own evaluation plus one per simulation through it (0 if fresh)."""
        return self._root.n

    def advance(self, action: int) -> None:
        """Play `action` at the root: its subtree becomes the new root, or a fresh one if never expanded."""
        root = self._root
        if root.actions is not None and action in root.actions:
            node = root.child(root.actions.index(action))
        else:
            s = root.state.clone()
            s.apply_action(action)  # raises IllegalMoveError, naming the legal moves
            node = _Node(s)
        self._root = node if node.actions is not None else _Node(node.state)  # drop a terminal's count


@dataclass(frozen=True)
class SearchOutput:
    """What one search says about its root."""

    actions: list[int]  # legal actions at the root (increasing)
    visits: np.ndarray  # (A,) visit counts per action, reused visits included
    policy: np.ndarray  # (A,) visits normalised, proofs applied (the prior if none): the AlphaZero target
    prior: np.ndarray  # (A,) network prior at the root, before noise
    value: float  # root value for the player to move, in [-1, 1]: mean of every value backed up there
    simulations: int  # simulations run by this call (reused visits excluded)


def search(
    trees: Sequence[Tree],
    evaluate: Evaluator,
    *,
    simulations: int,
    c_puct: float = 1.25,
    dirichlet_alpha: float | None = None,
    dirichlet_frac: float = 0.25,
    leaves_per_tree: int = 1,
    rng: np.random.Generator | None = None,
) -> list[SearchOutput]:
    """Run `simulations` new simulations in every tree (on top of reused visits), batched across trees.

    `c_puct` weighs the prior against the values seen. `dirichlet_alpha` (None: no noise) mixes
    `dirichlet_frac` of Dir(alpha) noise into the root priors of this call only; the stored prior stays
    clean. `leaves_per_tree` descents per tree and wave, spread by a virtual loss of 1, make bigger
    batches from fewer trees at some cost in search quality. `rng` draws only the noise.
    """
    if simulations < 0:
        raise ValueError(f"simulations must be >= 0, got {simulations}")
    if leaves_per_tree < 1:
        raise ValueError(f"leaves_per_tree must be >= 1, got {leaves_per_tree}")
    if c_puct < 0:
        raise ValueError(f"c_puct must be >= 0, got {c_puct}")
    if not 0.0 <= dirichlet_frac <= 1.0:
        raise ValueError(f"dirichlet_frac must be in [0, 1], got {dirichlet_frac}")
    roots = [t._root for t in trees]
    for r in roots:
        if r.returns is not None:
            raise ValueError(f"cannot search a finished {r.state.game.name} game")
    fresh = [r for r in roots if r.actions is None]
    if fresh:
        for r, e in zip(fresh, evaluate([r.state for r in fresh]), strict=True):
            r.expand(e)
            r.n, r.vsum = 1, float(e.value)
    priors = [r.prior for r in roots]
    if dirichlet_alpha is not None:
        rng = rng or np.random.default_rng()
        priors = [
            (1 - dirichlet_frac) * p + dirichlet_frac * rng.dirichlet(np.full(len(p), dirichlet_alpha))
            for p in priors
        ]
    vloss = 1.0 if leaves_per_tree > 1 else 0.0
    remaining = [simulations] * len(roots)
    while any(remaining):
        batch: list[_Node] = []
        for t, root in enumerate(roots):
            for _ in range(min(leaves_per_tree, remaining[t])):
                remaining[t] -= 1
                path, leaf = _descend(root, priors[t], c_puct, vloss)
                if leaf.proven is not None:
                    _backup(path, leaf, leaf.proven, vloss)
                elif leaf.waiting is None:
                    leaf.waiting = [path]
                    batch.append(leaf)
                else:  # reached again in this wave (virtual loss did not steer away): evaluate once
                    leaf.waiting.append(path)
        if batch:
            for leaf, e in zip(batch, evaluate([n.state for n in batch]), strict=True):
                leaf.expand(e)  # which may prove it (a move that ends the game)
                returns = leaf.proven or _returns(leaf.player, float(e.value), leaf.state.num_players())
                for path in leaf.waiting:
                    _backup(path, leaf, returns, vloss)
                leaf.waiting = None
    return [_output(r, simulations) for r in roots]


def _descend(root: _Node, root_prior: np.ndarray, c_puct: float, vloss: float):
    """Walk from `root` to a leaf (unexpanded or proven; the root itself always moves on unless it is
    terminal), adding a (virtual) visit to every edge."""
    node, path = root, []
    while node.actions is not None and node.returns is None and (node.proven is None or node is root):
        N = node.N
        prior = root_prior if node is root else node.prior
        # Unvisited edges have W = 0, so Q = W / max(N, 1) is 0 there.
        score = node.W / np.maximum(N, 1.0) + (c_puct * math.sqrt(node.n)) * prior / (N + 1.0)
        solved = node.solved
        if node.known and not (solved <= -1).all():  # (every move lost: PUCT as if nothing were known)
            score[solved >= 1] = np.inf  # a proven win: nothing else is worth a simulation
            score[solved <= -1] = -np.inf  # a proven loss: never, while another move is left
        i = int(score.argmax())
        N[i] += 1
        node.W[i] -= vloss  # virtual loss: pending paths look lost, so the next descent goes elsewhere
        node.n += 1
        path.append((node, i))
        node = node.child(i)
    return path, node


def _backup(path: list[tuple[_Node, int]], leaf: _Node, returns: Sequence[float], vloss: float) -> None:
    for node, i in path:
        v = returns[node.player]
        node.W[i] += vloss + v
        node.vsum += v
    leaf.n += 1
    if leaf.returns is None:
        leaf.vsum += returns[leaf.player]
    child = leaf  # proofs travel up while each node on the path becomes proven
    for node, i in reversed(path):
        if child.proven is None or not np.isnan(node.solved[i]):
            break
        node.prove(i, child.proven)
        child = node


def _returns(player: int, value: float, n_players: int) -> list[float]:
    """A value for the player to move as a zero-sum returns vector."""
    out = [-value / (n_players - 1)] * n_players
    out[player] = value
    return out


def _output(root: _Node, simulations: int) -> SearchOutput:
    visits = root.N.astype(np.int64)
    weights = visits.astype(np.float64)
    solved = root.solved
    if (solved >= 1).any():  # a proven win: the only move
        weights = (solved >= 1).astype(np.float64)
    elif (solved <= -1).all():  # every move loses: nothing to prefer but the prior
        weights = root.prior.copy()
    else:  # proven losses out
        weights[solved <= -1] = 0.0
    total = weights.sum()
    policy = weights / total if total else root.prior.copy()
    value = root.proven[root.player] if root.proven is not None else root.vsum / root.n
    return SearchOutput(list(root.actions), visits, policy, root.prior.copy(), float(value), simulations)


def run(states: Sequence[State], evaluate: Evaluator, **knobs) -> list[SearchOutput]:
    """Search each state from a fresh tree; `knobs` are those of `search`."""
    return search([Tree(s) for s in states], evaluate, **knobs)


def select_action(out: SearchOutput, *, temperature: float, rng: np.random.Generator | None = None) -> int:
    """The move to play: the search policy's most likely (most visited, proofs applied) at temperature 0
    (ties: higher prior, then lower action), else sampled in proportion to policy ** (1 / temperature)."""
    if temperature <= 0:
        # lexsort sorts by the last key first: policy, then prior, then -index.
        order = np.lexsort((-np.arange(len(out.actions)), out.prior, out.policy))
        return out.actions[int(order[-1])]
    weights = out.policy
    with np.errstate(divide="ignore"):
        logits = np.log(weights.astype(np.float64)) / temperature
    p = np.exp(logits - logits.max())
    rng = rng or np.random.default_rng()
    return out.actions[int(rng.choice(len(p), p=p / p.sum()))]


def rollout_evaluator(*, rollouts: int = 1, seed: int | None = None) -> Evaluator:
    """The baseline network: uniform priors, value = mean outcome of `rollouts` random playouts.

    `search(trees, rollout_evaluator(), simulations=200)` is rollout MCTS with PUCT selection.
    """
    if rollouts < 1:
        raise ValueError(f"rollouts must be >= 1, got {rollouts}")
    rng = random.Random(seed)

    def evaluate(states: Sequence[State]) -> list[Evaluation]:
        out = []
        for s in states:
            actions = s.legal_actions()
            if not actions:
                raise ValueError(f"cannot evaluate a finished {s.game.name} game")
            player = s.current_player()
            value = sum(random_rollout(s, rng)[player] for _ in range(rollouts)) / rollouts
            probs = np.full(len(actions), 1.0 / len(actions))
            out.append(Evaluation(actions, probs, np.log(probs), value))
        return out

    return evaluate
