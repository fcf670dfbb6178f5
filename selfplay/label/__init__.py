"""The labelling workbench: people compare answers, correct wrong ones and vote in an arena, on a local web
page or at a terminal (`python -m selfplay.label MODE`, see `selfplay.label.cli`).

Its files are JSONL records (`selfplay.io.labels`, below the config, which checks the correction files
it names): comparisons the verifier reads as pairs, corrections text imitation reads, votes
`selfplay.arena.ratings` reads. Items are shared out by a queue in files (`queue`), so
sessions resume and labellers never share an item; `workbench` holds what the page and the terminal show
and record. This package's top level loads no torch and no web server.
"""

from selfplay.io.labels import (
    COMPARISON,
    CORRECTION,
    FILES,
    VOTE,
    Correction,
    LabelFileError,
    Vote,
    load_corrections,
    load_votes,
    vote_results,
)
from selfplay.label.queue import FormError, Queue

__all__ = [
    "COMPARISON",
    "CORRECTION",
    "FILES",
    "VOTE",
    "Correction",
    "FormError",
    "LabelFileError",
    "Queue",
    "Vote",
    "load_corrections",
    "load_votes",
    "vote_results",
]
