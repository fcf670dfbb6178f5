"""Imitation's data: transcripts as training examples (one per position, the expert's move or a
correction's label as the target), split by game, and the policy they train (a new one, its tokenizer
learned from them, or a checkpoint to continue)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import agents
import envs
from selfplay.config import Config
from selfplay.core.training import ImitationError
from selfplay.core.transcript_stage import load_for
from selfplay.core.transcripts import Transcript, TranscriptError

__all__ = [
    "Example",
    "ImitationError",
    "build_examples",
    "merge_duplicates",
    "new_policy",
    "prepare",
    "split_games",
]


@dataclass(frozen=True)
class Example:
    prompt: list[int]  # <bos> + prompt tokens
    move: list[int]  # move tokens + <eos>
    value: float  # outcome for the player to move
    imitate: bool  # False for explored (random) moves: no policy loss
    game: int  # index of the transcript it came from
    state: envs.State  # the position, for constrained evaluation
    targets: tuple[tuple[tuple[int, ...], float], ...] = ()  # expert's move distribution (move tokens, p)


def merge_duplicates(examples: list[Example]) -> list[Example]:
    """One example per distinct position: the expert's moves there become a distribution, the outcomes a
    mean. Rare positions then weigh as much as the opening, which every game repeats."""
    groups: dict[tuple, list[Example]] = {}
    for e in examples:
        groups.setdefault((e.state.key(), tuple(e.prompt)), []).append(e)
    merged = []
    for group in groups.values():
        moves = Counter(tuple(e.move) for e in group if e.imitate)
        total = sum(moves.values())
        first = group[0]
        merged.append(
            Example(
                prompt=first.prompt,
                move=list(moves.most_common(1)[0][0]) if moves else first.move,
                value=float(np.mean([e.value for e in group])),
                imitate=bool(moves),
                game=first.game,
                state=first.state,
                targets=tuple(sorted((m, n / total) for m, n in moves.items())),
            )
        )
    return merged


def build_examples(
    transcripts: list[Transcript],
    game: envs.Game,
    policy: agents.Policy,
    *,
    source: str = "transcripts",
    games: set[int] | None = None,
    symmetries: bool = False,
) -> list[Example]:
    """Positions of every game (those indexed in `games`, if given), tokenised, and with `symmetries`
    those of each game's symmetric images too (`Game.symmetries`); checks they fit the model's context."""
    examples = []
    longest = (0, "")
    perms = game.symmetries() if symmetries else game.symmetries()[:1]
    for gi, t in enumerate(transcripts):
        if games is not None and gi not in games:
            continue
        for k, perm in enumerate(perms):
            state = game.new_initial_state()
            for m in t.moves:
                action = perm[m.action]
                prompt = m.prompt if k == 0 else state.prompt()
                learn = m.action if m.expert_action is None else m.expert_action  # a correction's label
                text = m.text if k == 0 and learn == m.action else state.action_to_text(perm[learn])
                try:
                    p, move = policy.encode_prompt(prompt), policy.encode_move(text)
                except agents.TokenizerError as e:
                    raise ImitationError(f"{source}: game {gi + 1}: {e}") from None
                longest = max(longest, (len(p) + len(move), prompt))
                imitate = not m.explored or m.expert_action is not None
                examples.append(Example(p, move, t.returns[m.player], imitate, gi, state.clone()))
                state.apply_action(action)
    block = policy.model.cfg.block_size
    if longest[0] > block:
        raise ImitationError(
            f"model.block_size = {block} is shorter than the longest prompt + move in {source} "
            f"({longest[0]} tokens); raise model.block_size to at least {longest[0]}"
        )
    return examples


def split_games(n_games: int, val_fraction: float, seed: int) -> tuple[set[int], set[int]]:
    """Held-out split by game (not by position), so no game leaks into both sides."""
    order = list(range(n_games))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(n_games * val_fraction)) if n_games > 1 else 0
    return set(order[n_val:]), set(order[:n_val])


def load_games(path: str | Path, config: Config) -> list[Transcript]:
    try:
        transcripts = load_for(config, path)
    except TranscriptError as e:
        raise ImitationError(str(e)) from None
    if len(transcripts) < 2:
        raise ImitationError(
            f"{path}: {len(transcripts)} game; imitation needs at least 2 (one to train on, one held out)"
        )
    return transcripts


def new_policy(config: Config, transcripts: list[Transcript], source: str) -> agents.Policy:
    """A new policy: the HF model of `model.path` (`backbone: hf`), or a native one whose tokenizer is
    learned from `transcripts` (`model.tokenizer: bpe`)."""
    cfg = config.imitation
    if config.model.backbone == "hf":
        policy = config.model.pretrained(
            device=cfg.device, seed=cfg.seed, run_dir=config.run_dir, game=config.game
        )
        tokenizer = policy.tokenizer
    elif config.model.tokenizer == "bpe":
        texts = [m.prompt for t in transcripts for m in t.moves] + [
            m.text for t in transcripts for m in t.moves
        ]
        tokenizer = agents.BPETokenizer.train(texts, merges=config.model.merges)
    else:
        tokenizer = agents.CharTokenizer()
    if config.model.scoring == "first_token":  # refused now, not at the first evaluation
        hf = config.model.backbone == "hf"
        whose = f"of {config.model.path}" if hf else f"learned from {source}"
        state = envs.make(config.game).new_initial_state()
        for a in range(state.game.num_distinct_actions()):
            if len(ids := tokenizer.encode(text := state.action_to_text(a))) != 1:
                raise ImitationError(
                    f"model.scoring: first_token needs every move to be one token; the tokenizer {whose} "
                    f"makes {text!r} {len(ids)} tokens (use model.scoring: sequence)"
                )
    if config.model.backbone == "hf":
        return policy
    mcfg = config.model.build(tokenizer.vocab_size, config.game)
    return agents.new_policy(
        mcfg, tokenizer=tokenizer, device=cfg.device, seed=cfg.seed, meta={"game": config.game}
    )


def prepare(
    config: Config, transcripts_path: str | Path, start: Path | None = None, more: Sequence[Path] = ()
) -> tuple[agents.Policy, list[Example], list[Example]]:
    """The policy (new, or the checkpoint `start`) and the training and held-out examples of the
    transcripts and of each file of `more`, each file split by game on its own (the first as imitation
    splits it); data that cannot be trained on is refused here, before any training."""
    cfg, game = config.imitation, envs.make(config.game)
    files = [(str(transcripts_path), load_games(transcripts_path, config))]
    files += [(str(p), load_games(p, config)) for p in more]
    policy = (
        new_policy(config, files[0][1], files[0][0])
        if start is None
        else agents.load(start, device=cfg.device)
    )
    train_ex: list[Example] = []
    val_ex: list[Example] = []
    for k, (source, transcripts) in enumerate(files):
        train_games, val_games = split_games(len(transcripts), cfg.val_fraction, cfg.seed + k)
        kw = {"source": source, "symmetries": cfg.symmetries}
        train_ex += build_examples(transcripts, game, policy, games=train_games, **kw)
        val_ex += build_examples(transcripts, game, policy, source=source, games=val_games)
    if cfg.dedupe:
        train_ex = merge_duplicates(train_ex)
    if not any(e.imitate for e in train_ex):
        raise ImitationError(
            f"{transcripts_path}: no expert (non-explored) moves to imitate in the training split"
        )
    return policy, train_ex, val_ex
