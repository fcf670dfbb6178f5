"""What the arena's keys share: search budgets, games in colour-swapped pairs, and the `evaluation`
section (a run's gauntlets), also used by a sweep's arena (`selfplay.sweep.arena`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from selfplay.config.sections import Section


def search_budgets(v: list[int]) -> list[int]:
    """Search budgets to play at (0: the raw policy): one or more, distinct, >= 0."""
    if not v or any(b < 0 for b in v) or len(set(v)) != len(v):
        raise ValueError(f"give one or more distinct budgets >= 0, got {v}")
    return v


def colour_pairs(v: int) -> int:
    """Games per pair of players: even, half with each colour."""
    if v % 2:
        raise ValueError(f"games come in colour-swapped pairs: an even number, got {v}")
    return v


Budgets = Annotated[list[int], AfterValidator(search_budgets)]
ColourPairs = Annotated[int, AfterValidator(colour_pairs)]


class EvaluationConfig(Section):
    """Matches of every new checkpoint (gauntlet) against baselines and recent checkpoints."""

    games: ColourPairs = Field(
        default=40, ge=0, description="Games per opponent, even (half with each colour); 0 disables."
    )
    baselines: list[str] = Field(
        default_factory=lambda: ["random"], description="Fixed opponents by spec, e.g. `alphabeta:2`."
    )
    recent: int = Field(default=2, ge=0, description="Also play this many of the previous checkpoints.")
    simulations: Budgets = Field(
        default_factory=lambda: [0],
        description="Search budgets a new checkpoint plays its gauntlet with, one gauntlet each: 0 is the "
        "raw policy, N its PUCT search (`PATH@mcts:N`), e.g. `[0, 64]`; a single number is one budget.",
    )
    workers: int = Field(default=1, ge=1, description="Processes for evaluation matches.")
    final_games: ColourPairs = Field(
        default=0,
        ge=0,
        description="Games per opponent, even, that the final checkpoint plays when stage 2 ends, at each "
        "budget of `simulations`: against the baselines and the imitation checkpoint, into the league "
        "and `RUN/arena/final.md` (a last word with a tighter interval); 0: none.",
    )

    @field_validator("simulations", mode="before")
    @classmethod
    def _budgets(cls, v: Any) -> Any:
        return [v] if isinstance(v, int) and not isinstance(v, bool) else v
