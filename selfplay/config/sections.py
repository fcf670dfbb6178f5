"""The sections of the run configuration: one frozen, documented model per component (the transcripts,
the model, each stage, evaluation, the runtime), each field described where it is declared.

`selfplay.config` nests them into the root `Config`, checks what needs more than one section, and reads
the whole from YAML; import them from there or from here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    """A configuration section: unknown keys are errors, values are checked strictly and never change."""

    # strict: `true` is not an integer nor `"3"` a number; no inf or nan anywhere (a learning rate of .inf)
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, strict=True, allow_inf_nan=False
    )


class TranscriptsConfig(Section):
    """Stage 1 data: expert games to imitate."""

    path: str | None = Field(
        default=None,
        description="Existing transcript JSONL to use instead of generating; relative to the config file.",
    )
    take: int | None = Field(
        default=None,
        ge=2,
        description="With `path`: imitate its first N episodes only (a data-size sweep over one file); "
        "None: all of them.",
    )
    corrections: list[str] = Field(
        default=[],
        description="Reward environments: correction files (the labelling workbench's `corrections.jsonl`, "
        "or JSONL lines of `prompt` and `completion`) whose records join the imitation data, prompts from "
        "any source; relative to the config file. A record of a held-out task is left out.",
    )
    expert: str = Field(
        default="alphabeta:depth=4", description="Expert spec, e.g. `alphabeta:depth=4`, `minimax`."
    )
    teacher: str = Field(
        default="expert",
        description="Reward environments: who writes the episodes, `expert` (exact) or one of the env's "
        "teachers with systematic errors (e.g. arithmetic's `no_carry`); games take `expert` instead.",
    )
    games: int = Field(default=2000, ge=1, description="Number of expert games to generate.")
    opening_plies: int = Field(default=2, ge=0, description="Random opening moves per game, for variety.")
    seed: int = Field(default=0, description="Base seed; game i is reproducible from (seed, i).")
    workers: int = Field(default=0, ge=0, description="Processes for generation; 0 uses every core.")


class ImitationConfig(Section):
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
    epochs: float | None = Field(
        default=None,
        gt=0,
        description="Passes over the training examples, setting the steps (ceil(epochs x examples / "
        "batch_size)) in place of `max_steps`: 1 sees each example once, as a scaling sweep needs; None: "
        "`max_steps`.",
    )
    max_minutes: float | None = Field(default=None, gt=0, description="Wall-clock budget; stops early.")
    batch_size: int = Field(default=64, ge=1, description="Positions per step.")
    lr: float = Field(default=2e-3, gt=0, description="Peak learning rate (AdamW).")
    warmup_steps: int = Field(default=100, ge=0, description="Linear warm-up steps, then cosine decay.")
    val_fraction: float = Field(default=0.1, gt=0, lt=1, description="Share of games held out.")
    eval_every: int = Field(default=200, ge=1, description="Steps between held-out evaluations.")
    eval_positions: int = Field(default=1000, ge=1, description="Held-out positions per evaluation.")
    patience: int = Field(default=5, ge=1, description="Evaluations without improvement before stopping.")
    seed: int = Field(default=0, description="Seed for initialisation, split and batches.")
    device: str = Field(default="auto", description="`auto` (CUDA if present), `cpu` or `cuda[:N]`.")
    threads: int = Field(default=0, ge=0, description="torch CPU threads; 0 leaves torch's default.")

    # Fixed, not keys: no config set them and no result measured another value (`REMOVED` keeps old runs).
    min_lr_ratio: ClassVar[float] = 0.1  # the cosine ends at lr x this
    weight_decay: ClassVar[float] = 0.01  # AdamW, matrices only
    grad_clip: ClassVar[float] = 1.0
    value_weight: ClassVar[float] = 0.5  # games: the value loss beside the move loss


class CorrectionsConfig(Section):
    """Correction rounds between imitation and stage 2. Games (DAgger, `selfplay.games.corrections`): the
    policy plays, the expert labels every position it reached, imitation continues on all games so far. Reward
    environments (`selfplay.text.corrections`): the policy answers `games` tasks, the run's judge corrects
    the wrong answers through the labelling workbench, imitation continues with the corrections."""

    rounds: int = Field(default=0, ge=0, description="Correction rounds; 0 goes from imitation to self-play.")
    games: int = Field(default=200, ge=2, description="Games the policy plays per round.")
    opponent: str = Field(
        default="self",
        description="Whom the policy plays: `self`, or a player spec (`random`, `alphabeta:depth=2`, a "
        "checkpoint); against an opponent it plays each colour in turn.",
    )
    expert: str | None = Field(
        default=None,
        description="Who labels the positions the policy reached (its own move, epsilon off): an expert "
        "spec; None: `transcripts.expert`, the teacher.",
    )
    temperature: float = Field(
        default=1.0, ge=0, description="The policy samples its moves at this temperature; 0 plays its best."
    )
    steps: int = Field(
        default=1000,
        ge=1,
        description="Imitation steps per round at `imitation.lr`, continuing the previous round's weights.",
    )
    share: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Reward environments: the share of a round's imitation data that the corrections so far "
        "make (repeated to it); the transcripts are the rest.",
    )
    seed: int = Field(default=0, description="Seed of the rounds' games (reward environments: tasks).")

    opening_plies: ClassVar[int] = 2  # games: random opening moves per round's game (fixed, not a key)


class Stage2Section(Section):
    """What both stage-2 sections (`selfplay` on games, `rl` on reward environments) declare alike: the
    budget in minutes, checkpoints, the seed, devices and threads. Pydantic lists a base's fields first,
    so these lead each section in dumps and in the reference."""

    max_minutes: float | None = Field(
        default=None, gt=0, description="Wall-clock budget for this stage, summed over resumed runs."
    )
    checkpoint_every: int = Field(default=100, ge=1, description="Learner steps between checkpoints.")
    seed: int = Field(default=0, description="Seed of the learner and (offset per actor) of the actors.")
    device: str = Field(default="auto", description="Learner device: `auto`, `cpu` or `cuda[:N]`.")
    actor_device: str = Field(default="auto", description="Actor device: `auto`, `cpu` or `cuda[:N]`.")
    threads: int = Field(default=1, ge=0, description="torch threads per process; 0 leaves torch's default.")

    grad_clip: ClassVar[float] = 1.0  # fixed, not a key (`REMOVED` keeps old runs)


class SelfPlayConfig(Stage2Section):
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
    actors: int = Field(default=2, ge=0, description="Actor processes; 0 plays in the learner's process.")
    games_per_actor: int = Field(default=32, ge=1, description="Games each actor plays at once (one batch).")
    simulations: int = Field(
        default=32, ge=0, description="PUCT simulations per move (`alphazero`); 0 samples the raw policy."
    )
    fast_simulations: int = Field(
        default=0,
        ge=0,
        description="Playout-cap randomisation (KataGo): with N > 0 a move gets the full `simulations` "
        "(root noise; a training target) only with probability `full_search_prob`, else a search of N "
        "simulations that only moves the game on; 0: every move a full search.",
    )
    full_search_prob: float = Field(
        default=0.25, gt=0, le=1, description="Share of moves searched in full (`fast_simulations` > 0)."
    )
    temperature_moves: int = Field(
        default=8,
        ge=0,
        description="Moves per game sampled (from the search's visits, or the policy at `simulations: 0`); "
        "greedy after (`alphazero`).",
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
    lr: float = Field(default=3e-4, gt=0, description="Peak learning rate (AdamW, after 20 warm-up steps).")
    min_lr_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Cosine decay of the learning rate after warm-up to `lr` times this, over the budget "
        "(`steps`, or `max_minutes` where they run out first: the final checkpoint is a settled one, not "
        "one step of a wandering policy); 1: constant.",
    )
    value_mix: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="`alphazero`: share of the search's root value in the value target, (1 - w) outcome + "
        "w root value: less noise than the outcome of a game its later moves decided; 0: the outcome.",
    )
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

    # Fixed, not keys: no config set them and no result measured another value (`REMOVED` keeps old runs).
    warmup_steps: ClassVar[int] = 20
    weight_decay: ClassVar[float] = 0.01  # AdamW, matrices only
    value_weight: ClassVar[float] = 1.0
    c_puct: ClassVar[float] = 1.25
    dirichlet_alpha: ClassVar[float] = 0.5  # root noise of the searches that make training targets
    dirichlet_frac: ClassVar[float] = 0.25
    temperature: ClassVar[float] = 1.0  # of the moves sampled in the first `temperature_moves`


class RLConfig(Stage2Section):
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
    actors: int = Field(default=1, ge=0, description="Actor processes; 0 samples in the learner's process.")
    prompts_per_step: int = Field(default=32, ge=1, description="Prompts each actor samples per step.")
    group_size: int = Field(default=8, ge=2, description="Completions sampled per prompt (G).")
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per completion at most (in the thinking format, of the answer after the work); "
        "None: the env's max_completion_chars.",
    )
    think_budget: int | None = Field(
        default=None,
        ge=0,
        description="With `env_options.thinking: true`: tokens of work the policy may write before it is "
        "made to answer, in every stage's generation (0: answer at once); None: the env's longest work.",
    )
    batch_size: int = Field(default=256, ge=1, description="Completions per learner step.")
    replay_size: int = Field(
        default=1024, ge=1, description="Newest completions kept for the learner (keep it near on-policy)."
    )
    min_replay: int = Field(default=256, ge=1, description="Completions to collect before the first step.")
    replay_ratio: float = Field(
        default=2.0, gt=0, description="Times each collected completion is trained on, on average, at most."
    )
    lr: float = Field(
        default=1e-4, gt=0, description="Learning rate (AdamW, constant after 10 warm-up steps)."
    )
    clip: float = Field(default=0.2, gt=0, description="PPO ratio clip, per token.")
    kl_weight: float = Field(
        default=0.05, ge=0, description="Weight of KL(policy || imitation policy) per token; 0 skips it."
    )
    scale_rewards: Literal["group", "none"] = Field(
        default="group",
        description="Advantages (reward - group mean) over the group's std (`group`), or unscaled (`none`, "
        "Dr. GRPO: a group whose rewards barely differ, say a verifier's scores of wrong answers, barely "
        "moves the policy).",
    )
    eval_every: int = Field(default=25, ge=1, description="Learner steps between held-out evaluations.")
    eval_tasks: int = Field(
        default=500, ge=1, description="Held-out tasks for true accuracy (greedy, the env's own score)."
    )
    verifier_refresh_every: int = Field(
        default=0,
        ge=0,
        description="With a verifier in the reward: learner steps between retrains of the verifier on the "
        "policy's latest samples (`verifier_refresh_tasks` training tasks, labelled as `verifier.labels` "
        "says: the env's score, or the judge's comparisons in `RUN/labels/refresh_STEP`), continuing from "
        "its current weights, so it keeps up as the policy moves; each saved as "
        "`RUN/checkpoints/verifier_step_STEP`. 0: the verifier stays as trained.",
    )
    verifier_refresh_tasks: int = Field(
        default=1000, ge=2, description="Training tasks sampled from the current policy per verifier refresh."
    )
    verifier_refresh_steps: int = Field(
        default=300, ge=1, description="Verifier optimizer steps per refresh (its other knobs: `verifier.*`)."
    )

    # Fixed, not keys: no config set them and no result measured another value (`REMOVED` keeps old runs).
    temperature: ClassVar[float] = 1.0  # the actors sample at it; the loss's ratios are of that policy
    warmup_steps: ClassVar[int] = 10
    weight_decay: ClassVar[float] = 0.0
    min_lr_ratio: ClassVar[float] = 1.0  # constant after warm-up
    publish_every: ClassVar[int] = 2


class JudgeSection(Section):
    """Who labels for the run when people are in the loop (`verifier.labels: comparisons`): a simulated
    labeller answering the labelling workbench's forms, or people (`python -m selfplay.label`)."""

    kind: Literal["env", "people"] = Field(
        default="env",
        description="`env`: the environment's score picks the better answer; `people`: the run reads what "
        "people labelled in `RUN/labels` (`python -m selfplay.label compare --run RUN`) and labels nothing "
        "itself.",
    )
    noise: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of the judge's votes flipped to another choice, at random.",
    )
    seed: int = Field(default=0, description="Seed of the judge's ties and flips.")

    def spec(self) -> str:
        """The judge as `selfplay.label.judges.make_judge` reads it (and its records' labeller, after
        `judge:`)."""
        return f"{self.kind}:noise={self.noise:g}"


class VerifierSection(Section):
    """The verifier stage (reward environments, when `rl.reward` is `verifier` or `mixed`): an outcome
    verifier trained on the imitation policy's own samples, each labelled by the environment's score, or
    on comparisons of them made through the labelling workbench."""

    labels: Literal["env", "comparisons"] = Field(
        default="env",
        description="`env`: each sample labelled by the environment's score (pointwise, plus `pairs`); "
        "`comparisons`: three samples of each task shown to the judge (`judge.*`) through the labelling "
        "workbench (`RUN/labels/comparisons.jsonl`), and the verifier trains on its picks as pairs alone.",
    )

    init: str = Field(
        default="policy",
        description="The verifier's starting weights: `policy` (the imitation checkpoint it judges); "
        "`imitation:STEPS`, a separate, longer imitation run on the same transcripts (`RUN/verifier_base`: "
        "a reward model usually starts from a stronger fine-tuned model than the policy it judges); "
        "`scratch`; or the path of a policy checkpoint of the same environment and tokenizer.",
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

    val_fraction: ClassVar[float] = 0.1  # of the training prompts, held out (fixed, not a key)

    @field_validator("init")
    @classmethod
    def _init_form(cls, v: str) -> str:
        if v.startswith("imitation:"):
            steps = v.split(":", 1)[1]
            if not steps.isdigit() or int(steps) < 1:
                raise ValueError(f"imitation:STEPS needs a positive whole number of steps, got {v!r}")
        return v


class RuntimeConfig(Section):
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
