"""Things that choose actions with a network: the language-model policy (and later search and verifier).

>>> import agents
>>> policy = agents.load("runs/tictactoe/checkpoints/imitation")  # doctest: +SKIP
>>> [e.best() for e in policy.evaluate(states)]  # doctest: +SKIP
"""

from agents.checkpoint import CheckpointError, load, new_policy, read_meta, read_model_config, save
from agents.mcts import Evaluator, SearchOutput, Tree, rollout_evaluator, search, select_action
from agents.model import GPT, PRESETS, ModelConfig, adamw, lr_at
from agents.policy import Evaluation, Face, Policy, Query, queries, resolve_device
from agents.tokenizer import BPETokenizer, CharTokenizer, TokenizerError
from agents.verifier import Encoded, Verifier, load_verifier, new_verifier, save_verifier

__all__ = [
    "GPT",
    "PRESETS",
    "BPETokenizer",
    "CharTokenizer",
    "CheckpointError",
    "Encoded",
    "Evaluation",
    "Evaluator",
    "Face",
    "ModelConfig",
    "Policy",
    "Query",
    "SearchOutput",
    "TokenizerError",
    "Tree",
    "Verifier",
    "adamw",
    "load",
    "load_verifier",
    "lr_at",
    "new_policy",
    "new_verifier",
    "queries",
    "read_meta",
    "read_model_config",
    "resolve_device",
    "rollout_evaluator",
    "save",
    "save_verifier",
    "search",
    "select_action",
]
