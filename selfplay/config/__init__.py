"""The run configuration: the sections (`selfplay.config.sections`) nested in one `Config`, read from YAML.

Unknown keys, wrong types and out-of-range values are errors naming the key and the file, raised before
anything runs. `key=value` overrides (dotted keys, YAML values) come from the command line:

    python -m selfplay.run configs/game.yaml transcripts.games=200 run_dir=runs/quick

Here also: the checks that need more than one section, the fingerprint by which a stage's output is
reused, and the config reference in docs/config.md (`python -m selfplay.config` prints it).
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

import envs
from envs.experts import ExpertSpecError, make_expert
from envs.files import read_yaml
from envs.thinking import Thinking
from selfplay.config.evaluation import EvaluationConfig
from selfplay.config.fingerprint import ADDED_LATER, REMOVED, fingerprint, section_dump
from selfplay.config.model import HF_ONLY, NATIVE_ONLY, ModelSection
from selfplay.config.parsing import ConfigError, UniqueKeyLoader, parse_overrides, set_dotted
from selfplay.config.players import PlayerSpecError, check
from selfplay.config.sections import (
    CorrectionsConfig,
    ImitationConfig,
    JudgeSection,
    RLConfig,
    RuntimeConfig,
    Section,
    SelfPlayConfig,
    TranscriptsConfig,
    VerifierSection,
)
from selfplay.io.labels import LabelFileError, load_corrections

__all__ = [
    "ADDED_LATER",
    "REMOVED",
    "Config",
    "ConfigError",
    "CorrectionsConfig",
    "EvaluationConfig",
    "ImitationConfig",
    "JudgeSection",
    "ModelSection",
    "RLConfig",
    "RuntimeConfig",
    "Section",
    "SelfPlayConfig",
    "TranscriptsConfig",
    "VerifierSection",
    "check_device",
    "dump_config",
    "fingerprint",
    "load_config",
    "parse_overrides",
    "reference_markdown",
    "section_dump",
]


class Config(Section):
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
    corrections: CorrectionsConfig = Field(default_factory=CorrectionsConfig)
    selfplay: SelfPlayConfig = Field(default_factory=SelfPlayConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    verifier: VerifierSection = Field(default_factory=VerifierSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
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
        if self.selfplay.value_mix and self.selfplay.algorithm == "pg":  # `none`: no stage 2 to refuse
            raise ValueError("selfplay.value_mix: for alphazero only (the search's root value is its target)")
        if self.runtime.backend == "ray" and (self.rl if self.is_reward_env else self.selfplay).actors < 1:
            raise ValueError("runtime.backend: ray needs at least 1 actor (selfplay.actors / rl.actors)")
        if self.transcripts.take is not None and self.transcripts.path is None:
            raise ValueError("transcripts.take: the first N episodes of transcripts.path; set the path")
        self._check_devices()
        self.model.check_backbone()
        if self.model.backbone == "hf" and self.selfplay.start == "scratch" and not self.is_reward_env:
            raise ValueError(
                "selfplay.start: scratch re-initialises a native model; backbone hf starts from imitation"
            )
        if self.model.backbone == "hf" and self.verifier.init == "scratch":
            raise ValueError(
                "verifier.init: scratch builds a native model; with backbone hf use policy, "
                "imitation:STEPS or a path"
            )
        self._check_face()
        if self.is_reward_env:
            c, default = self.corrections, CorrectionsConfig()
            game_only = [k for k in ("opponent", "expert") if getattr(c, k) != getattr(default, k)]
            if c.rounds and game_only:
                raise ValueError(
                    f"corrections.{game_only[0]}: for games; a reward environment's rounds have none"
                )
            if self.runtime.inference_server == "on":
                raise ValueError(
                    "runtime.inference_server: 'on' serves game actors only; reward environments "
                    "generate text in their actors (use auto or off)"
                )
            self._check_reward_env()
            return
        if self.env_options:
            raise ValueError(f"env_options: the game {self.game!r} takes no options")
        if self.transcripts.teacher != "expert":
            raise ValueError("transcripts.teacher: for reward environments; a game's is transcripts.expert")
        if self.transcripts.corrections:
            raise ValueError(
                "transcripts.corrections: for reward environments (games have corrections.rounds)"
            )
        game = envs.make(self.game)
        specs = [("evaluation.baselines", b) for b in self.evaluation.baselines]
        if self.transcripts.path is None:
            specs.insert(0, ("transcripts.expert", self.transcripts.expert))
        if self.corrections.rounds:
            self._check_corrections(game)
            if self.corrections.expert is not None:
                specs.append(("corrections.expert", self.corrections.expert))
        for key, spec in specs:
            try:
                make_expert(spec, game)
            except ExpertSpecError as e:
                raise ValueError(f"{key}: {e}") from None

    def _check_corrections(self, game: envs.Game) -> None:
        c = self.corrections
        if c.expert is None and self.transcripts.path is not None:
            raise ValueError(
                "corrections.expert: name the expert that labels the positions (the transcripts come from "
                "transcripts.path, so there is no transcripts.expert to default to)"
            )
        if c.opponent != "self":
            try:
                check(c.opponent, game)
            except PlayerSpecError as e:
                raise ValueError(f"corrections.opponent: {e}") from None

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
        if m.board_features:
            if m.face != "board":
                raise ValueError("model.board_features: for model.face board only (the stem reads them)")
            try:
                envs.make(self.game).check_board_features(m.board_features)
            except ValueError as e:
                raise ValueError(f"model.board_features: {e}") from None

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

    def reward_env(self) -> envs.RewardEnv:
        """The reward environment this config trains on, generated as its `rl` section says (the thinking
        format's budget and answer length)."""
        env = envs.make(self.game, **self.env_options)
        if isinstance(env, Thinking):
            return env.with_budget(self.rl.think_budget, self.rl.max_new_tokens)
        return env

    def _check_reward_env(self) -> None:
        try:
            env = self.reward_env()
        except (TypeError, ValueError) as e:
            raise ValueError(f"env_options: {e}") from None
        if self.verifier.labels == "comparisons" and self.rl.reward == "programmatic":
            raise ValueError(
                "verifier.labels: comparisons train the verifier, which rl.reward: programmatic "
                "never uses; set rl.reward: verifier (or mixed)"
            )
        refresh = self.rl.verifier_refresh_every
        if refresh and self.rl.reward == "programmatic":
            raise ValueError("rl.verifier_refresh_every: rl.reward: programmatic uses no verifier to refresh")
        if refresh and self.verifier.labels == "comparisons" and self.judge.kind == "people":
            raise ValueError(
                "rl.verifier_refresh_every: judge.kind: people cannot label while RL runs; refresh with "
                "judge.kind: env, or label between runs and resume"
            )
        if self.rl.think_budget is not None and not isinstance(env, Thinking):
            raise ValueError("rl.think_budget: the thinking format is off; set env_options.thinking: true")
        if self.transcripts.path is not None and self.transcripts.teacher != "expert":
            raise ValueError(
                "transcripts.teacher: the transcripts come from transcripts.path; set one of them"
            )
        try:
            env.teacher(self.transcripts.teacher)
        except ValueError as e:
            raise ValueError(f"transcripts.teacher: {e}") from None
        new_tokens = completion_tokens(self.rl.max_new_tokens, env)
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


def completion_tokens(max_new_tokens: int | None, env: envs.RewardEnv) -> int:
    """Tokens of a generated completion at most: `rl.max_new_tokens` (default: the env's longest
    completion); in the thinking format the env's own count (budget, the format's words, the answer, which
    `Config.reward_env` bounds by `rl.max_new_tokens`)."""
    if isinstance(env, Thinking):
        return env.completion_tokens()
    return max_new_tokens or env.max_completion_chars


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


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> Config:
    """Read, override and validate a config; `ConfigError` names the file and the offending key."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file (e.g. configs/game.yaml)")
    try:
        data = read_yaml(path, ConfigError, UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    if data is None:
        raise ConfigError(f"{path}: the config is empty; start from one in configs/, e.g. configs/game.yaml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    parsed = parse_overrides(list(overrides))
    for key, value in parsed:
        set_dotted(data, key, value)
    _drop_removed_keys(path, data)
    _drop_native_keys(path, data, dict(parsed))
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
    tc, update = config.transcripts, {}
    if tc.path is not None:  # resolved against the config file, as users expect
        update["path"] = str((path.parent / tc.path).resolve())
    if tc.corrections:
        update["corrections"] = [str((path.parent / c).resolve()) for c in tc.corrections]
        for key, file in zip(tc.corrections, update["corrections"], strict=True):
            try:
                load_corrections(file)
            except LabelFileError as e:
                raise ConfigError(f"{path}: transcripts.corrections: {key}: {e}") from None
    if update:
        config = config.model_copy(update={"transcripts": tc.model_copy(update=update)})
    return config


def _drop_removed_keys(path: Path, data: dict[str, Any]) -> None:
    """Keys removed from the config (`REMOVED`) go when they hold the one value they still could (a
    run directory's config.yaml, written before, lists every key); another value is an error saying so."""
    for name, removed in REMOVED.items():
        section = data.get(name)
        if not isinstance(section, dict):
            continue
        for key, value in removed.items():
            if key not in section:
                continue
            if section[key] != value or isinstance(section[key], bool) != isinstance(value, bool):
                raise ConfigError(
                    f"{path}: {name}.{key} was removed from the config (no run set it); it is fixed at "
                    f"{value!r}, got {section[key]!r}"
                )
            del section[key]


def _drop_native_keys(path: Path, data: dict[str, Any], overrides: dict[str, Any]) -> None:
    """`model.backbone=hf` on the command line over a native config: the file's native-model keys go
    (said on stderr), so any config runs with an HF model; set in the file itself they are errors. So
    does its `scoring` (`first_token` needs one token per move, which a pretrained tokenizer that splits
    letters from digits, as GPT-2's and Llama's do, never gives a move like `a1`)."""
    model = data.get("model")
    if overrides.get("model.backbone") != "hf" or not isinstance(model, dict):
        return
    dropped = [k for k in (*NATIVE_ONLY, "scoring") if k in model and f"model.{k}" not in overrides]
    for k in dropped:
        del model[k]
    if dropped:
        keys = ", ".join(f"model.{k}" for k in dropped)
        print(f"{path}: model.backbone=hf: ignoring the file's native-model keys {keys}", file=sys.stderr)


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


def dump_config(config: Config) -> str:
    """The config as YAML that loads back to the same config: the model section without the other
    backbone's keys (set there, they are errors), and for `hf` without an unset `block_size` (set, it caps
    the model's context)."""
    data = config.model_dump(mode="json")
    m = config.model
    drop = set(HF_ONLY) if m.backbone == "native" else set(NATIVE_ONLY)
    if m.backbone == "hf" and "block_size" not in m.model_fields_set:
        drop.add("block_size")
    data["model"] = {k: v for k, v in data["model"].items() if k not in drop}
    return yaml.safe_dump(data, sort_keys=False)


def reference_markdown() -> str:
    """The config reference of docs/config.md, generated from the field descriptions, and the keys
    removed, each at the value it is fixed at."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        own = inspect.get_annotations(model)  # a section's own keys first, then the shared ones
        for name, field in sorted(model.model_fields.items(), key=lambda kv: kv[0] not in own):
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            rows.append(f"| `{prefix}{name}` | `{default!r}` | {field.description or ''} |")

    walk(Config, "")
    rows += [
        "",
        "Removed keys: no shipped config set them, no measured result used another value and no open "
        "issue named them. Each is fixed at its last default; a stored `config.yaml` may still hold it "
        "there (run directories written before still resume), any other value is an error.",
        "",
        "| removed key | fixed at |",
        "|---|---|",
    ]
    rows += [f"| `{s}.{k}` | `{v!r}` |" for s, keys in REMOVED.items() for k, v in keys.items()]
    return "\n".join(rows)
