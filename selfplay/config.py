"""The run configuration: one frozen, documented model per component, nested in `Config`, read from YAML.

Unknown keys, wrong types and out-of-range values are errors naming the key and the file, raised before
anything runs. `key=value` overrides (dotted keys, YAML values) come from the command line:

    python -m selfplay.run configs/game.yaml transcripts.games=200 run_dir=runs/quick
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

import envs
from envs.experts import ExpertSpecError, make_expert


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the file and the key."""


class _Section(BaseModel):
    # strict: `true` is not an integer nor `"3"` a number; no inf or nan anywhere (a learning rate of .inf)
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False
    )


class TranscriptsConfig(_Section):
    """Stage 1 data: expert games to imitate."""

    path: str | None = Field(
        default=None,
        description="Existing transcript JSONL to use instead of generating; relative to the config file.",
    )
    expert: str = Field(
        default="alphabeta:depth=4", description="Expert spec, e.g. `alphabeta:depth=4`, `minimax`."
    )
    games: int = Field(default=2000, ge=1, description="Number of expert games to generate.")
    opening_plies: int = Field(default=2, ge=0, description="Random opening moves per game, for variety.")
    seed: int = Field(default=0, description="Base seed; game i is reproducible from (seed, i).")
    workers: int = Field(default=0, ge=0, description="Processes for generation; 0 uses every core.")


class ModelSection(_Section):
    """The policy network (`agents.model`)."""

    size: Literal["nano", "micro", "small", "medium"] = Field(
        default="small", description="Preset: nano (2x64), micro (3x96), small (4x128), medium (6x192)."
    )
    tokenizer: Literal["char", "bpe"] = Field(
        default="bpe",
        description="`char`: one token per character; `bpe`: characters plus tokens learned from the "
        "transcripts (a cell, a move, `X to move`), never crossing a space.",
    )
    merges: int = Field(default=200, ge=0, description="Learned tokens at most (`bpe`).")
    block_size: int = Field(default=256, ge=8, description="Context length in tokens.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout in every block.")
    positions: Literal["learned", "rope"] = Field(
        default="learned",
        description="`learned`: an embedding per position (GPT-2); `rope`: rotary positions (Llama), which "
        "let attention read offsets between tokens the same way at every position.",
    )
    face: Literal["text", "board"] = Field(
        default="text",
        description="How the policy reads a position (games): `text`, the game's prompt; `board`, the "
        "board's planes through a convolutional stem as one prefix token per cell or patch (with row and "
        "column embeddings), then the prompt's last line (whose turn). Recorded in the checkpoint.",
    )
    stem_channels: int = Field(default=64, ge=1, description="Channels of the board stem (`face: board`).")
    stem_layers: int = Field(default=4, ge=1, description="Convolutions of the board stem (`face: board`).")
    stem_patch: int = Field(
        default=2,
        ge=1,
        description="Cells per stem token along each side (`face: board`): 2 gives the LM one token per "
        "2 x 2 patch (a 6 x 7 board as 12 tokens instead of 42), as a vision transformer's patches.",
    )
    prefix: Literal["causal", "bidirectional"] = Field(
        default="causal",
        description="Attention over the prompt: `bidirectional` lets every prompt token see the whole prompt "
        "(a prefix LM); the move is read causally either way.",
    )
    scoring: Literal["sequence", "first_token"] = Field(
        default="sequence",
        description="How a legal move is scored: `sequence`, the likelihood of its text and end of move; "
        "`first_token`, of its first token, read at the prompt's last position (every move one token: "
        "the moves need not ride along in the sequence).",
    )

    def build(self, vocab_size: int, game: str):
        """The network's `agents.ModelConfig` for `game` (the board stem sized by its planes)."""
        import agents  # lazily: loading a config needs no torch

        board = {}
        if self.face == "board":
            height, width, planes = envs.make(game).observation_shape()
            board = dict(planes=planes, board_height=height, board_width=width)
            board.update(
                stem_channels=self.stem_channels, stem_layers=self.stem_layers, stem_patch=self.stem_patch
            )
        return agents.ModelConfig.preset(
            self.size,
            vocab_size=vocab_size,
            block_size=self.block_size,
            dropout=self.dropout,
            positions=self.positions,
            prefix=self.prefix,
            scoring=self.scoring,
            **board,
        )


class ImitationConfig(_Section):
    """Stage 1: supervised fine-tuning on the transcripts (loss on the move tokens only)."""

    loss: Literal["legal", "tokens"] = Field(
        default="legal",
        description="`legal`: cross-entropy of the expert's move among the legal moves, each scored by its "
        "text's likelihood (as at inference); `tokens`: plain next-token loss on the move's text.",
    )
    dedupe: bool = Field(
        default=True,
        description="Merge repeated positions of the training split into one example whose target is the "
        "expert's move distribution there (`legal` loss).",
    )
    symmetries: bool = Field(
        default=False,
        description="Also train on every symmetric image of each training game (the game's symmetries: "
        "Connect Four's mirror, the 8 of tic-tac-toe, 4 of Othello); held-out games stay as played.",
    )
    max_steps: int = Field(default=3000, ge=1, description="Optimizer steps at most.")
    max_minutes: float | None = Field(default=None, gt=0, description="Wall-clock budget; stops early.")
    batch_size: int = Field(default=64, ge=1, description="Positions per step.")
    lr: float = Field(default=2e-3, gt=0, description="Peak learning rate (AdamW).")
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1, description="Final LR as a fraction of `lr`.")
    warmup_steps: int = Field(default=100, ge=0, description="Linear warm-up steps, then cosine decay.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay (matrices only).")
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient norm clip.")
    value_weight: float = Field(default=0.5, ge=0, description="Weight of the value loss; 0 trains no value.")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="Share of games held out.")
    eval_every: int = Field(default=200, ge=1, description="Steps between held-out evaluations.")
    eval_positions: int = Field(default=1000, ge=1, description="Held-out positions per evaluation.")
    patience: int = Field(default=5, ge=1, description="Evaluations without improvement before stopping.")
    seed: int = Field(default=0, description="Seed for initialisation, split and batches.")
    device: str = Field(default="auto", description="`auto` (CUDA if present), `cpu` or `cuda[:N]`.")
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 leaves torch's default.")


class SelfPlayConfig(_Section):
    """Stage 2: beyond imitation. Actors play with the latest weights; the learner trains on their games."""

    algorithm: Literal["alphazero", "pg", "none"] = Field(
        default="alphazero",
        description="`alphazero`: expert iteration (targets = search visits, value = outcome); `pg`: "
        "PPO-clip against a pool of past checkpoints with a value baseline; `none`: stop after imitation.",
    )
    start: Literal["imitation", "scratch"] = Field(
        default="imitation", description="Initial weights: the imitation checkpoint, or a fresh network."
    )
    steps: int = Field(default=400, ge=1, description="Learner steps (the budget), unless minutes run out.")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Wall-clock budget for this stage, summed over resumed runs."
    )
    actors: int = Field(default=2, ge=0, description="Actor processes; 0 plays in the learner's process.")
    games_per_actor: int = Field(default=32, ge=1, description="Games each actor plays at once (one batch).")
    simulations: int = Field(
        default=32, ge=0, description="PUCT simulations per move (`alphazero`); 0 samples the raw policy."
    )
    leaves_per_tree: int = Field(
        default=1, ge=1, description="Leaves per tree per network call (virtual loss)."
    )
    c_puct: float = Field(default=1.25, gt=0, description="Exploration constant of PUCT.")
    dirichlet_alpha: float = Field(default=0.5, gt=0, description="Root Dirichlet noise concentration.")
    dirichlet_frac: float = Field(default=0.25, ge=0, le=1, description="Share of root prior that is noise.")
    temperature: float = Field(default=1.0, ge=0, description="Move-selection temperature early in a game.")
    temperature_moves: int = Field(
        default=8, ge=0, description="Moves per game played at `temperature`; greedy after (`alphazero`)."
    )
    opening_plies: int = Field(default=0, ge=0, description="Random opening moves per game, for variety.")
    symmetries: bool = Field(
        default=False,
        description="`alphazero`: also learn from every symmetric image of each finished game (the game's "
        "symmetries; search targets and moves mapped with the board); each image counts as positions.",
    )
    replay_size: int = Field(default=20000, ge=1, description="Positions kept in the replay buffer.")
    min_replay: int = Field(default=512, ge=1, description="Positions to collect before the first step.")
    replay_ratio: float = Field(
        default=4.0, gt=0, description="Times each collected position is trained on, on average, at most."
    )
    batch_size: int = Field(default=64, ge=1, description="Positions per learner step.")
    lr: float = Field(default=3e-4, gt=0, description="Learning rate (AdamW, constant after warm-up).")
    warmup_steps: int = Field(default=20, ge=0, description="Linear learning-rate warm-up steps.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay (matrices only).")
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient norm clip.")
    value_weight: float = Field(default=1.0, ge=0, description="Weight of the value loss.")
    kl_weight: float = Field(
        default=0.0, ge=0, description="Weight of KL(policy || start checkpoint); 0 skips the reference."
    )
    clip: float = Field(default=0.2, gt=0, description="PPO ratio clip (`pg`).")
    entropy_weight: float = Field(default=0.01, ge=0, description="Entropy bonus (`pg`).")
    pool_size: int = Field(default=8, ge=1, description="Past checkpoints kept as opponents (`pg`).")
    pool_by_rating: bool = Field(
        default=True, description="Sample `pg` opponents near the learner's Elo (else uniformly)."
    )
    publish_every: int = Field(default=5, ge=1, description="Learner steps between weight publications.")
    checkpoint_every: int = Field(default=100, ge=1, description="Learner steps between checkpoints.")
    seed: int = Field(default=0, description="Seed of the learner and (offset per actor) of the actors.")
    device: str = Field(default="auto", description="Learner device: `auto`, `cpu` or `cuda[:N]`.")
    actor_device: str = Field(default="auto", description="Actor device: `auto`, `cpu` or `cuda[:N]`.")
    threads: int = Field(default=1, ge=0, description="torch threads per process; 0 leaves torch's default.")


class RLConfig(_Section):
    """Stage 2 on a reward environment: group-relative PPO (GRPO-style) with a KL penalty toward the
    imitation policy. Actors sample `group_size` completions of each prompt and score them with the reward;
    the learner trains on the group-relative advantages (reward - group mean) / (group std + eps)."""

    algorithm: Literal["grpo", "none"] = Field(
        default="grpo", description="`grpo`: group-relative PPO-clip; `none`: stop after imitation."
    )
    reward: Literal["programmatic", "verifier", "mixed"] = Field(
        default="programmatic",
        description="`programmatic`: the environment's own score; `verifier`: the learned verifier's "
        "probability (trained first, in the verifier stage); `mixed`: a weighted sum of the two.",
    )
    verifier_weight: float = Field(
        default=0.5, ge=0, le=1, description="Weight of the verifier in the `mixed` reward."
    )
    steps: int = Field(default=300, ge=1, description="Learner steps (the budget), unless minutes run out.")
    max_minutes: float | None = Field(
        default=None, gt=0, description="Wall-clock budget for this stage, summed over resumed runs."
    )
    actors: int = Field(default=1, ge=0, description="Actor processes; 0 samples in the learner's process.")
    prompts_per_step: int = Field(default=32, ge=1, description="Prompts each actor samples per step.")
    group_size: int = Field(default=8, ge=2, description="Completions sampled per prompt (G).")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature of the actors.")
    top_k: int | None = Field(default=None, ge=1, description="Sample among the k likeliest tokens only.")
    max_new_tokens: int | None = Field(
        default=None, ge=1, description="Tokens per completion at most; None: the env's max_completion_chars."
    )
    batch_size: int = Field(default=256, ge=1, description="Completions per learner step.")
    replay_size: int = Field(
        default=1024, ge=1, description="Newest completions kept for the learner (keep it near on-policy)."
    )
    min_replay: int = Field(default=256, ge=1, description="Completions to collect before the first step.")
    replay_ratio: float = Field(
        default=2.0, gt=0, description="Times each collected completion is trained on, on average, at most."
    )
    lr: float = Field(default=1e-4, gt=0, description="Learning rate (AdamW, constant after warm-up).")
    warmup_steps: int = Field(default=10, ge=0, description="Linear learning-rate warm-up steps.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay (matrices only).")
    grad_clip: float = Field(default=1.0, gt=0, description="Gradient norm clip.")
    clip: float = Field(default=0.2, gt=0, description="PPO ratio clip, per token.")
    kl_weight: float = Field(
        default=0.05, ge=0, description="Weight of KL(policy || imitation policy) per token; 0 skips it."
    )
    entropy_weight: float = Field(default=0.0, ge=0, description="Entropy bonus per token.")
    skip_uniform_groups: bool = Field(
        default=True, description="Drop groups whose rewards are all equal (zero advantage) before training."
    )
    publish_every: int = Field(default=2, ge=1, description="Learner steps between weight publications.")
    eval_every: int = Field(default=25, ge=1, description="Learner steps between held-out evaluations.")
    eval_tasks: int = Field(
        default=500, ge=1, description="Held-out tasks for true accuracy (greedy, the env's own score)."
    )
    checkpoint_every: int = Field(default=100, ge=1, description="Learner steps between checkpoints.")
    seed: int = Field(default=0, description="Seed of the learner and (offset per actor) of the actors.")
    device: str = Field(default="auto", description="Learner device: `auto`, `cpu` or `cuda[:N]`.")
    actor_device: str = Field(default="auto", description="Actor device: `auto`, `cpu` or `cuda[:N]`.")
    threads: int = Field(default=1, ge=0, description="torch threads per process; 0 leaves torch's default.")


class VerifierSection(_Section):
    """The verifier stage (reward environments, when `rl.reward` is `verifier` or `mixed`): an outcome
    verifier trained on the imitation policy's own samples, each labelled by the environment's score."""

    init: str = Field(
        default="policy",
        description="The verifier's starting weights: `policy` (the imitation checkpoint it judges); "
        "`imitation:STEPS`, a separate, longer imitation run on the same transcripts (`RUN/verifier_base`: "
        "a reward model usually starts from a stronger fine-tuned model than the policy it judges); "
        "`scratch`; or the path of a policy checkpoint of the same environment and tokenizer.",
    )
    size: Literal["nano", "micro", "small", "medium"] | None = Field(
        default=None,
        description="Model preset of the verifier when `init` is `imitation:STEPS` or `scratch` (a verifier "
        "larger than the policy); None: `model.size`.",
    )
    tasks: int = Field(default=2000, ge=2, description="Training tasks to sample completions for.")
    samples: int = Field(default=8, ge=1, description="Completions sampled per task (and per held-out task).")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature for its data.")
    with_expert: bool = Field(
        default=True,
        description="Also label the env expert's completion of each training task: a right answer for "
        "every prompt, so that the verifier must judge answers, not how hard a prompt is.",
    )
    pairs: int = Field(
        default=8,
        ge=0,
        description="Comparisons per task (a right and a wrong completion of it) trained with the pairwise "
        "Bradley-Terry loss beside the pointwise one; 0: pointwise only.",
    )
    likelihood: bool = Field(
        default=False,
        description="Add to the verifier's logit its own language model's log-likelihood of the completion, "
        "times a learned weight (starting at 0): what the network knows of the right answer reaches the "
        "score without the head having to learn the comparison. Pair it with `lm_weight` > 0.",
    )
    lm_weight: float = Field(
        default=0.0,
        ge=0,
        description="Weight of a language-modelling loss on the right completions beside the verifier's "
        "own (the joint objective of Cobbe et al. 2021): it keeps what the network knows of right answers.",
    )
    steps: int = Field(default=600, ge=1, description="Optimizer steps.")
    batch_size: int = Field(default=128, ge=1, description="Labelled completions (and comparisons) per step.")
    lr: float = Field(default=5e-4, gt=0, description="Peak learning rate (AdamW, warm-up then cosine).")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="Share of training prompts held out.")
    eval_tasks: int = Field(
        default=500, ge=1, description="Held-out tasks for ROC-AUC and best-of-N against greedy decoding."
    )
    best_of: int = Field(default=8, ge=1, description="N of the best-of-N measurement.")
    best_of_temperature: float | None = Field(
        default=None,
        gt=0,
        description="Sampling temperature of the best-of-N candidates; None: `temperature` (the same "
        "held-out samples as the ROC-AUC).",
    )
    seed: int = Field(default=0, description="Seed of sampling, initialisation and batches.")

    @field_validator("init")
    @classmethod
    def _init_form(cls, v: str) -> str:
        if v.startswith("imitation:"):
            steps = v.split(":", 1)[1]
            if not steps.isdigit() or int(steps) < 1:
                raise ValueError(f"imitation:STEPS needs a positive whole number of steps, got {v!r}")
        return v


class EvaluationConfig(_Section):
    """Matches of every new checkpoint (gauntlet) against baselines and recent checkpoints."""

    games: int = Field(
        default=40, ge=0, description="Games per opponent, even (half with each colour); 0 disables."
    )
    baselines: list[str] = Field(
        default_factory=lambda: ["random"], description="Fixed opponents by spec, e.g. `alphabeta:2`."
    )
    recent: int = Field(default=2, ge=0, description="Also play this many of the previous checkpoints.")
    simulations: int = Field(default=0, ge=0, description="Search budget of checkpoints in evaluation.")
    workers: int = Field(default=1, ge=1, description="Processes for evaluation matches.")

    @field_validator("games")
    @classmethod
    def _pairs(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"games come in colour-swapped pairs: an even number, got {v}")
        return v


class RuntimeConfig(_Section):
    """Where actors (and the learner) run. Every backend runs the same training code."""

    backend: Literal["local", "ray"] = Field(
        default="local",
        description="`local`: actor processes on this machine; `ray`: Ray actors, locally or on a cluster "
        "(`pip install .[ray]`).",
    )
    ray_address: str | None = Field(
        default=None,
        description="Ray cluster to join (`auto`, `ray://host:10001`); None starts Ray on this machine.",
    )
    inference_server: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Game actors send positions to one batched inference server instead of each running "
        "the network; `auto`: on when there are 2+ actors and the actor device is CUDA.",
    )

    server_batch: int = Field(default=2048, ge=1, description="Positions per server forward pass, at most.")
    server_wait_ms: float = Field(
        default=2.0, ge=0, description="How long the server waits for more requests to fill a batch."
    )
    actor_cpus: float = Field(default=1.0, gt=0, description="`ray`: CPUs reserved per actor.")
    actor_gpus: float = Field(
        default=0.0, ge=0, description="`ray`: GPU fraction per actor (when actors run the network)."
    )
    server_gpus: float = Field(default=0.0, ge=0, description="`ray`: GPU fraction of the inference server.")
    learner_gpus: float = Field(
        default=0.0,
        ge=0,
        description="`ray`: above 0, the learner runs as a Ray task holding this many GPUs (for a driver "
        "without a GPU); 0: in the driver process.",
    )
    max_restarts: int = Field(
        default=3,
        ge=0,
        description="Restarts of each dead actor (and of the inference server) before the run fails; the "
        "games a dead actor had in flight are lost and counted (`stats.json`: `games_lost`).",
    )

    @field_validator("inference_server", mode="before")
    @classmethod
    def _yaml_on_off(cls, v: Any) -> Any:
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v  # YAML reads on as true


class Config(_Section):
    """A whole run."""

    game: str = Field(
        default="connect_four",
        description="Registered game or reward environment (`envs.names(kind=None)`); a reward environment "
        "runs the text stages (imitation, verifier, RL) instead of the game ones.",
    )
    env_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the reward environment, e.g. `{digits: 3, ops: '+*'}` (games take none).",
    )
    run_dir: str = Field(
        default="runs/connect_four", description="Where everything the run writes lands; relative to the cwd."
    )
    transcripts: TranscriptsConfig = Field(default_factory=TranscriptsConfig)
    model: ModelSection = Field(default_factory=ModelSection)
    imitation: ImitationConfig = Field(default_factory=ImitationConfig)
    selfplay: SelfPlayConfig = Field(default_factory=SelfPlayConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    verifier: VerifierSection = Field(default_factory=VerifierSection)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    @field_validator("run_dir")
    @classmethod
    def _some_dir(cls, v: str) -> str:
        if not v.strip():
            raise ValueError(
                "run_dir must name a directory (an empty one would write into the working directory)"
            )
        return v

    @field_validator("game")
    @classmethod
    def _known_game(cls, name: str) -> str:
        if name not in envs.names(kind=None):
            raise ValueError(
                f"unknown game {name!r}; known: {', '.join(envs.names())}; "
                f"reward environments: {', '.join(envs.names(kind='reward'))}"
            )
        return name

    @property
    def is_reward_env(self) -> bool:
        """Whether `game` names a reward environment (text stages) rather than a game."""
        return self.game in envs.names(kind="reward")

    def check(self) -> None:
        """Checks that need more than one field (experts and baselines must play the configured game; a
        reward environment must accept its options and fit the model's context; a replay buffer must be
        able to hold what the learner waits for; devices must exist where they are used)."""
        for key, section in (("selfplay", self.selfplay), ("rl", self.rl)):
            if section.min_replay > section.replay_size:
                raise ValueError(
                    f"{key}.min_replay = {section.min_replay} is more than {key}.replay_size = "
                    f"{section.replay_size} holds: the learner would wait forever"
                )
        if self.selfplay.symmetries and self.selfplay.algorithm == "pg":
            raise ValueError("selfplay.symmetries: for alphazero only (pg's ratios need the move it sampled)")
        if self.runtime.backend == "ray" and (self.rl if self.is_reward_env else self.selfplay).actors < 1:
            raise ValueError("runtime.backend: ray needs at least 1 actor (selfplay.actors / rl.actors)")
        self._check_devices()
        self._check_face()
        if self.is_reward_env:
            if self.runtime.inference_server == "on":
                raise ValueError(
                    "runtime.inference_server: 'on' serves game actors only; reward environments "
                    "generate text in their actors (use auto or off)"
                )
            self._check_reward_env()
            return
        if self.env_options:
            raise ValueError(f"env_options: the game {self.game!r} takes no options")
        game = envs.make(self.game)
        specs = [("evaluation.baselines", b) for b in self.evaluation.baselines]
        if self.transcripts.path is None:
            specs.insert(0, ("transcripts.expert", self.transcripts.expert))
        for key, spec in specs:
            try:
                make_expert(spec, game)
            except ExpertSpecError as e:
                raise ValueError(f"{key}: {e}") from None

    def _check_face(self) -> None:
        m = self.model
        plain = m.face == "text" and m.prefix == "causal" and m.scoring == "sequence"
        if self.is_reward_env and not plain:
            raise ValueError(
                "model.face, model.prefix and model.scoring: reward environments generate free text, "
                "which needs face text, prefix causal and scoring sequence"
            )
        if self.imitation.loss == "tokens" and not plain:
            raise ValueError(
                "imitation.loss: tokens trains plain next-token prediction; with model.face board, "
                "model.prefix bidirectional or model.scoring first_token use imitation.loss: legal"
            )
        if m.scoring == "first_token" and m.tokenizer == "char" and not self.is_reward_env:
            state = envs.make(self.game).new_initial_state()
            long = [
                t for a in range(state.game.num_distinct_actions()) if len(t := state.action_to_text(a)) > 1
            ]
            if long:
                raise ValueError(
                    "model.scoring: first_token needs every move to be one token; with model.tokenizer "
                    f"char, {self.game}'s move {long[0]!r} is {len(long[0])} (use model.tokenizer: bpe)"
                )
        if m.face == "board" and len(envs.make(self.game).observation_shape()) != 3:
            shape = envs.make(self.game).observation_shape()
            raise ValueError(f"model.face: board needs a game with (H, W, C) planes; {self.game} has {shape}")

    def _check_devices(self) -> None:
        """Every device string parses; those used in this process (and by local actors, on this machine)
        must exist here. On Ray the learner (with `runtime.learner_gpus`) and the actors run elsewhere."""
        stage2 = "rl" if self.is_reward_env else "selfplay"
        ray = self.runtime.backend == "ray"
        remote_learner = ray and self.runtime.learner_gpus > 0 and not self.is_reward_env
        used_here = {"imitation.device", f"{stage2}.device", f"{stage2}.actor_device"}
        if remote_learner:
            used_here.discard(f"{stage2}.device")
        if ray:
            used_here.discard(f"{stage2}.actor_device")
        for key in (
            "imitation.device",
            "selfplay.device",
            "selfplay.actor_device",
            "rl.device",
            "rl.actor_device",
        ):
            section, name = key.split(".")
            check_device(getattr(getattr(self, section), name), key, available=key in used_here)

    def _check_reward_env(self) -> None:
        try:
            env = envs.make(self.game, **self.env_options)
        except (TypeError, ValueError) as e:
            raise ValueError(f"env_options: {e}") from None
        new_tokens = self.rl.max_new_tokens or env.max_completion_chars
        need = 1 + env.max_prompt_chars + new_tokens + 1  # <bos> prompt completion <eos>, in characters
        if self.model.tokenizer == "char" and self.model.block_size < need:
            raise ValueError(
                f"model.block_size = {self.model.block_size} is shorter than a {self.game} prompt and "
                f"completion ({need} tokens); raise it or lower rl.max_new_tokens"
            )
        if self.rl.algorithm != "none" and self.rl.reward != "programmatic" and env.max_turns > 1:
            raise ValueError(
                f"rl.reward: {self.rl.reward!r} needs a single-turn environment; {self.game} has "
                f"up to {env.max_turns} turns (use programmatic)"
            )


def check_device(device: str, key: str = "device", *, available: bool = True) -> None:
    """`auto`, or a torch device string (`cpu`, `cuda`, `cuda:1`, `mps`); with `available`, one that exists
    on this machine. Raises ValueError naming `key`."""
    if device == "auto":
        return
    import torch  # lazily: loading a config should not cost a torch import unless a device is named

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"{key}: {device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if not available or dev.type == "cpu":
        return
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{key}: {device!r} but this torch sees no CUDA device (use auto or cpu)")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"{key}: {device!r} but this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{key}: {device!r} but MPS is not available here (use auto or cpu)")
    elif dev.type not in ("cuda", "mps"):
        raise ValueError(f"{key}: {device!r}: selfplay runs on cpu, cuda or mps")


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.setdefault(k, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_overrides(items: list[str]) -> list[tuple[str, Any]]:
    """`["a.b=3", "c=x"]` -> `[("a.b", 3), ("c", "x")]`, values parsed as YAML scalars."""
    out = []
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value (e.g. transcripts.games=100)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e})") from None
        out.append((key.strip(), value))
    return out


class _DuplicateKey(yaml.YAMLError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (where the last would silently win)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(f"key {key!r} is given twice (lines {seen[key]} and {line})")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> Config:
    """Read, override and validate a config; `ConfigError` names the file and the offending key."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file (e.g. configs/game.yaml)")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except _DuplicateKey as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        raise ConfigError(f"{path}: the config is empty; start from one in configs/, e.g. configs/game.yaml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    parsed = parse_overrides(list(overrides))
    for key, value in parsed:
        _set_dotted(data, key, value)
    try:
        config = Config.model_validate(data)
        config.check()
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            cli = any(key == k or key.startswith(k + ".") for k, _ in parsed)
            problems.append(_describe(err) + (" [from a command-line override]" if cli else ""))
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    if config.transcripts.path is not None:  # resolved against the config file, as users expect
        resolved = str((path.parent / config.transcripts.path).resolve())
        config = config.model_copy(
            update={"transcripts": config.transcripts.model_copy(update={"path": resolved})}
        )
    return config


def _describe(err: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        section: type[BaseModel] = Config
        for part in err["loc"][:-1]:
            field = section.model_fields.get(str(part))
            annotation = field.annotation if field else None
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                break
            section = annotation
        return f"unknown key {key!r}; known keys here: {', '.join(section.model_fields)}"
    got, msg = err.get("input"), err["msg"].removeprefix("Value error, ")
    if isinstance(got, dict) or repr(got) in msg:
        return f"{key}: {msg}"
    return f"{key}: {msg} (got {got!r})"


# Keys added after run directories already existed: left out of `fingerprint` while at these values, so
# the stages those directories hold stay reusable (their checkpoints record the older fingerprint).
ADDED_LATER = {
    "model": {
        "face": "text",
        "stem_channels": 64,
        "stem_layers": 4,
        "stem_patch": 2,
        "prefix": "causal",
        "scoring": "sequence",
    },
    "imitation": {"symmetries": False},
}


def fingerprint(config: Config, sections: set[str], **extra: Any) -> str:
    """A short hash of what a stage's output depends on: the config's `sections` (and `extra` values);
    a stage is reused when its checkpoint records the same fingerprint."""
    relevant = config.model_dump(include=sections)
    if "transcripts" in relevant:
        relevant["transcripts"].pop("workers", None)  # how fast, not what
    for section, added in ADDED_LATER.items():
        for key, value in added.items():
            if key in relevant.get(section, {}) and relevant[section][key] == value:
                del relevant[section][key]
    relevant.update(extra)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dump_config(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def reference_markdown() -> str:
    """The config reference table for the README, generated from the field descriptions."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            rows.append(f"| `{prefix}{name}` | `{default!r}` | {field.description or ''} |")

    walk(Config, "")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference_markdown())
