"""Bradley-Terry ratings: hand-computed cases, recovery of known strengths, intervals, tables and plots."""

import math

import numpy as np
import pytest

import selfplay.arena.ratings as ratings
from selfplay.arena.ratings import RatingsError, expected_score, fit


def test_two_players_match_the_hand_computed_fit():
    # a beat b 3 times in 4: P(a wins) = 3/4, so elo_a - elo_b = 400 log10(3) = 190.85.
    results = [("a", "b", 1.0)] * 3 + [("a", "b", 0.0)]
    elo = fit(results, anchor="b", prior=0)
    assert elo["b"] == 0.0
    assert elo["a"] == pytest.approx(400 * math.log10(3), abs=1e-6)
    # Draws are half a win: a scores 2 of 3 -> 400 log10(2).
    elo = fit([("a", "b", 1.0), ("b", "a", 0.5), ("a", "b", 0.5)], anchor="b", prior=0)
    assert elo["a"] == pytest.approx(400 * math.log10(2), abs=1e-6)
    # The default prior is one virtual draw per pair that met: 3.5 of 5 -> 400 log10(7 / 3).
    assert fit(results, anchor="b")["a"] == pytest.approx(400 * math.log10(7 / 3), abs=1e-6)


def test_the_fit_is_the_maximum_likelihood():
    """At the MLE every player's expected score equals their actual score (the likelihood equations)."""
    rng = np.random.default_rng(1)
    names = ["p0", "p1", "p2", "p3"]
    results = [
        (names[i], names[j], float(rng.choice([0.0, 0.5, 1.0], p=[0.3, 0.2, 0.5])))
        for _ in range(30)
        for i in range(4)
        for j in range(4)
        if i != j
    ]
    elo = fit(results, anchor="p0", prior=0)
    for n in names:
        actual = sum(s if a == n else 1 - s for a, b, s in results if n in (a, b))
        expected = sum(
            expected_score(elo[a], elo[b]) if a == n else expected_score(elo[b], elo[a])
            for a, b, _ in results
            if n in (a, b)
        )
        assert expected == pytest.approx(actual, abs=1e-6)


def synthetic(true, games_per_pair, seed):
    rng = np.random.default_rng(seed)
    names = list(true)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = expected_score(true[a], true[b])
            for g in range(games_per_pair):
                win = rng.random() < p
                out.append((a, b, float(win)) if g % 2 == 0 else (b, a, float(not win)))
    return out


def test_known_strengths_are_recovered_and_intervals_narrow_with_games():
    true = {"random": 0.0, "weak": 150.0, "mid": 300.0, "strong": 500.0}
    widths = []
    for games in (40, 640):
        rows = ratings.league_table(synthetic(true, games, seed=games), samples=200, seed=0)
        assert [r.name for r in rows] == ["strong", "mid", "weak", "random"]
        by = {r.name: r for r in rows}
        assert by["random"].elo == 0.0 and by["random"].lo == by["random"].hi == 0.0
        for n, r in by.items():
            assert r.lo <= r.elo <= r.hi
            assert r.lo - 25 <= true[n] <= r.hi + 25  # the truth inside (or at the edge of) the interval
        widths.append(np.mean([r.hi - r.lo for r in rows if r.name != "random"]))
    assert widths[1] < widths[0] / 2.5  # 16x the games: about 4x narrower


def test_undefeated_players_stay_finite_and_bad_inputs_are_errors():
    results = [("champ", "random", 1.0)] * 10 + [("random", "chump", 0.5)] * 4
    elo = fit(results)
    assert all(math.isfinite(v) for v in elo.values())
    assert elo["champ"] == pytest.approx(400 * math.log10(21), abs=1e-6)  # 10.5 of 11 against random
    with pytest.raises(RatingsError, match="champ won or lost every game"):
        fit(results, prior=0)
    with pytest.raises(RatingsError, match="never met"):
        fit([("a", "b", 1.0), ("c", "d", 0.5)])
    with pytest.raises(RatingsError, match="no games"):
        fit([])
    with pytest.raises(RatingsError, match="score in"):
        fit([("a", "b", 2.0)])
    assert [len(g) for g in ratings.groups([("a", "b", 1.0), ("c", "d", 0.5)])] == [2, 2]


def test_anchoring_without_the_anchor_uses_the_mean():
    elo = fit([("a", "b", 1.0), ("a", "b", 0.0), ("a", "b", 1.0)], anchor="random", anchor_elo=1000)
    assert (elo["a"] + elo["b"]) / 2 == pytest.approx(1000)
    assert "random did not play" in ratings.anchoring(elo, "random", 1000)
    assert ratings.anchoring(["random", "x"]) == "Elo anchored at random = 0"


def test_table_counts_and_writers(tmp_path):
    results = [("a", "random", 1.0), ("random", "a", 0.5), ("a", "b", 0.0), ("b", "random", 1.0)]
    rows = ratings.league_table(results, samples=20)
    by = {r.name: r for r in rows}
    assert (by["a"].games, by["a"].wins, by["a"].draws, by["a"].losses) == (3, 1, 1, 1)
    assert by["a"].score == pytest.approx(0.5)
    assert [r.rank for r in rows] == [1, 2, 3]
    md, csv = ratings.write_table(rows, tmp_path / "league", note="a note")
    assert md.read_text().startswith("| rank | player | Elo | 95% CI |") and "a note" in md.read_text()
    assert csv.read_text().splitlines()[0] == "rank,name,elo,lo,hi,games,wins,draws,losses,score"
    assert len(csv.read_text().splitlines()) == 4
    steps = {"a": 100, "b": 200}
    png = ratings.plot_elo_by_step(rows, steps, tmp_path / "elo.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png = ratings.plot_elo_by_budget(rows, {"a": 0, "b": 16}, tmp_path / "budget.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
