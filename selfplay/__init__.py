"""Train a language-model policy by imitation, then beyond it: self-play on games, RL on reward
environments. The command line is `python -m selfplay.run CONFIG`; this is the same as a library:

>>> import selfplay, envs
>>> config = selfplay.load_config("configs/tictactoe.yaml", ["transcripts.games=200"])  # doctest: +SKIP
>>> run_dir = selfplay.run_pipeline(config)  # every stage, into config.run_dir  # doctest: +SKIP
>>> game = envs.make("tictactoe")
>>> a, b = selfplay.make_player("random", game, seed=0), selfplay.make_player("minimax", game)
>>> records = selfplay.play_matches("tictactoe", ["random", "minimax"], out_dir="arena")  # doctest: +SKIP
>>> selfplay.league_table(selfplay.results_of(records))  # doctest: +SKIP

Names load on first use (a module imports torch only when something of it is asked for), so that
`python -m selfplay.transcripts` and the actor processes start fast. The stages each run one step of the
pipeline (`selfplay.run` strings them together): the transcripts, imitation (games or text), self-play,
the verifier, RL. A new kind of stage 2 subclasses `Stage` and runs in `train_stage2` (`selfplay.core.loop`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the table below loads, for readers and type checkers
    from selfplay.arena.league import gauntlet, ratings_from
    from selfplay.arena.matches import MatchesError, load_matches, results_of
    from selfplay.arena.matchplay import play as play_matches
    from selfplay.arena.players import Player, PlayerSpecError
    from selfplay.arena.players import make as make_player
    from selfplay.arena.ratings import Result, bootstrap, league_table
    from selfplay.arena.ratings import fit as fit_ratings
    from selfplay.config import Config, ConfigError, load_config
    from selfplay.core.loop import Stage
    from selfplay.core.loop import train as train_stage2
    from selfplay.core.transcript_stage import transcripts_stage
    from selfplay.core.transcripts import expert_transcripts, load_text_transcripts, load_transcripts
    from selfplay.core.transcripts import generate as generate_transcripts
    from selfplay.games.imitate import imitation_stage
    from selfplay.run import run as run_pipeline
    from selfplay.run import selfplay_stage
    from selfplay.runtime import Actors, RuntimeFailure, make_runtime
    from selfplay.text.imitate import imitation_stage as text_imitation_stage
    from selfplay.text.rl import train as rl_stage
    from selfplay.text.verifier import best_of_n
    from selfplay.text.verifier import train as train_verifier
    from selfplay.text.verifier.stage import verifier_stage

_EXPORTS = {  # public name -> (module, name there)
    # configuration
    "Config": ("config", "Config"),
    "ConfigError": ("config", "ConfigError"),
    "load_config": ("config", "load_config"),
    # the pipeline and its stages
    "run_pipeline": ("run", "run"),
    "transcripts_stage": ("core.transcript_stage", "transcripts_stage"),
    "imitation_stage": ("games.imitate", "imitation_stage"),
    "text_imitation_stage": ("text.imitate", "imitation_stage"),
    "selfplay_stage": ("run", "selfplay_stage"),
    "verifier_stage": ("text.verifier.stage", "verifier_stage"),
    "rl_stage": ("text.rl", "train"),
    "Stage": ("core.loop", "Stage"),
    "train_stage2": ("core.loop", "train"),
    "Actors": ("runtime", "Actors"),
    "make_runtime": ("runtime", "make_runtime"),
    "RuntimeFailure": ("runtime", "RuntimeFailure"),
    # data
    "generate_transcripts": ("core.transcripts", "generate"),
    "load_transcripts": ("core.transcripts", "load_transcripts"),
    "expert_transcripts": ("core.transcripts", "expert_transcripts"),
    "load_text_transcripts": ("core.transcripts", "load_text_transcripts"),
    # players, the arena, ratings
    "Player": ("arena.players", "Player"),
    "PlayerSpecError": ("arena.players", "PlayerSpecError"),
    "make_player": ("arena.players", "make"),
    "play_matches": ("arena.matchplay", "play"),
    "load_matches": ("arena.matches", "load_matches"),
    "MatchesError": ("arena.matches", "MatchesError"),
    "results_of": ("arena.matches", "results_of"),
    "gauntlet": ("arena.league", "gauntlet"),
    "ratings_from": ("arena.league", "ratings_from"),
    "Result": ("arena.ratings", "Result"),
    "fit_ratings": ("arena.ratings", "fit"),
    "bootstrap": ("arena.ratings", "bootstrap"),
    "league_table": ("arena.ratings", "league_table"),
    # the verifier
    "train_verifier": ("text.verifier", "train"),
    "best_of_n": ("text.verifier", "best_of_n"),
}

__all__ = [  # the keys of _EXPORTS, written out for tools that read `__all__` without running it
    "Actors",
    "Config",
    "ConfigError",
    "MatchesError",
    "Player",
    "PlayerSpecError",
    "Result",
    "RuntimeFailure",
    "Stage",
    "best_of_n",
    "bootstrap",
    "expert_transcripts",
    "fit_ratings",
    "gauntlet",
    "generate_transcripts",
    "imitation_stage",
    "league_table",
    "load_config",
    "load_matches",
    "load_text_transcripts",
    "load_transcripts",
    "make_player",
    "make_runtime",
    "play_matches",
    "ratings_from",
    "results_of",
    "rl_stage",
    "run_pipeline",
    "selfplay_stage",
    "text_imitation_stage",
    "train_stage2",
    "train_verifier",
    "transcripts_stage",
    "verifier_stage",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(f"selfplay.{module}"), attr)
        globals()[name] = value  # once
        return value
    try:  # a submodule: selfplay.arena.cli, selfplay.arena.ratings, ...
        return importlib.import_module(f"selfplay.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"selfplay.{name}":
            raise
        raise AttributeError(f"module 'selfplay' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
