"""What every text stage shares (imitation, the verifier, the text actor, RL): the environment a config
names, its held-out tasks and the sampler that never draws them for training, greedy or sampled episodes
(`play`) and their scores, and completion log-likelihoods under a policy (`forward_completions`).

Held-out tasks come from their own seed (`held_out_tasks`), and their ids never appear in training
(`TaskSampler` skips them), so accuracy is always measured on tasks no stage trained on.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np
import torch

import agents
import envs
from envs.reward import sample_tasks
from envs.thinking import ANSWER, THINK, split
from selfplay.config import Config, completion_tokens
from selfplay.core.training import ImitationError

HELD_OUT_SEED = 1_000_000
"""Held-out tasks come from seed `transcripts.seed + HELD_OUT_SEED`, apart from every training stream."""


def make_env(config: Config) -> envs.RewardEnv:
    return config.reward_env()


def max_new_tokens(config: Config, env: envs.RewardEnv) -> int:
    """Tokens of a generated completion at most (in the thinking format: work, its words, the answer)."""
    return completion_tokens(config.rl.max_new_tokens, env)


# --- tasks ---------------------------------------------------------------------------------------
def held_out_tasks(config: Config, env: envs.RewardEnv, n: int) -> list[envs.Task]:
    """The first `n` held-out tasks (the same for every stage of a run, and for any `n`, a prefix)."""
    return sample_tasks(env, n, seed=config.transcripts.seed + HELD_OUT_SEED)


def held_out_ids(config: Config, env: envs.RewardEnv) -> set[str]:
    """Ids of every held-out task any stage evaluates on (the longest of their prefixes)."""
    n = max(config.imitation.eval_positions, config.rl.eval_tasks, config.verifier.eval_tasks)
    return {t.id for t in held_out_tasks(config, env, n)}


class TaskSampler:
    """Training tasks from a seeded stream, skipping any whose id is held out."""

    def __init__(self, env: envs.RewardEnv, held_out: set[str], seed: int | Sequence[int]) -> None:
        self.env, self.held_out = env, held_out
        self.rng = np.random.default_rng(seed)

    def __call__(self, n: int) -> list[envs.Task]:
        out: list[envs.Task] = []
        for _ in range(1000 * n):
            task = self.env.sample(self.rng)
            if task.id not in self.held_out:
                out.append(task)
                if len(out) == n:
                    return out
        raise ImitationError(f"{self.env.name}: almost every task is held out; lower the held-out counts")


# --- playing episodes ----------------------------------------------------------------------------
class ThinkingSampler:
    """Generation in the thinking format (`envs.thinking`): after `think:`, up to `env.budget` tokens of
    work, stopped early by the policy's own `answer:`; then `answer:` (written for the policy when the
    budget ran out or the work ended without it) and up to `env.answer_tokens` tokens of answer.

    The completion is the text as generated, the words written for the policy included."""

    def __init__(self, policy: agents.Policy, env: envs.Thinking) -> None:
        self.policy, self.env = policy, env

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, stop: Sequence[str] = (), seed=None, **knobs
    ) -> list[str]:
        env, generate = self.env, self.policy.generate
        heads = [p + THINK for p in prompts]
        budget = min(env.budget, max_new_tokens)
        works = [""] * len(prompts)
        if budget > 0:
            works = generate(heads, max_new_tokens=budget, stop=(ANSWER, *stop), seed=seed, **knobs)
        made = [h + w + ("" if w.endswith(" ") else " ") + ANSWER for h, w in zip(heads, works, strict=True)]
        seed = None if seed is None else seed + 104_729
        cap = min(env.answer_tokens, max_new_tokens)
        answers = generate(made, max_new_tokens=cap, stop=stop, seed=seed, **knobs)
        return [m[len(p) :] + a for p, m, a in zip(prompts, made, answers, strict=True)]


def sampler(policy: agents.Policy, env: envs.RewardEnv):
    """What generates `env`'s completions: the policy, or in the thinking format a `ThinkingSampler`."""
    return ThinkingSampler(policy, env) if isinstance(env, envs.Thinking) else policy


def play(
    policy: agents.Policy,
    env: envs.RewardEnv,
    tasks: Sequence[envs.Task],
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    max_new_tokens: int = 32,
    seed: int | None = None,
    batch_size: int = 1024,
) -> list[list[tuple[str, str]]]:
    """One episode per task, every active episode's next turn generated in one batch: a list of
    (prompt, completion) turns per task. Single-turn tasks take one generation call."""
    episodes: list[list[tuple[str, str]]] = [[] for _ in tasks]
    gen = sampler(policy, env)
    for turn in range(env.max_turns):
        active = []
        for i, task in enumerate(tasks):
            prompt = env.prompt_for(task, [c for _, c in episodes[i]])
            if prompt is not None:
                active.append((i, prompt))
        if not active:
            break
        for start in range(0, len(active), batch_size):
            chunk = active[start : start + batch_size]
            texts = gen.generate(
                [p for _, p in chunk],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_k=top_k,
                stop=env.stop,
                seed=None if seed is None else seed + 7919 * turn + start,
            )
            for (i, prompt), text in zip(chunk, texts, strict=True):
                episodes[i].append((prompt, text))
    return episodes


def majority(env: envs.RewardEnv, completions: Sequence[str]) -> str:
    """The first of `completions` whose answer is the most frequent one (in the thinking format, the
    answer after the work, so that different work towards one answer counts as one vote)."""

    def answer(c: str) -> str:
        parts = split(c) if isinstance(env, envs.Thinking) else None
        return parts[1] if parts else c.strip()

    top = collections.Counter(answer(c) for c in completions).most_common(1)[0][0]
    return next(c for c in completions if answer(c) == top)


def episode_scores(env: envs.RewardEnv, tasks: Sequence[envs.Task], episodes) -> np.ndarray:
    """The env's own score of each episode (0 for anything it cannot read)."""
    return np.array(
        [env.score_episode(t, [c for _, c in ep]).value for t, ep in zip(tasks, episodes, strict=True)]
    )


@torch.no_grad()
def accuracy(
    policy: agents.Policy, env: envs.RewardEnv, tasks: Sequence[envs.Task], *, max_new_tokens: int
) -> float:
    """Mean true score of greedy episodes on `tasks`."""
    was_training = policy.model.training
    policy.model.eval()
    episodes = play(policy, env, tasks, temperature=0.0, max_new_tokens=max_new_tokens)
    policy.model.train(was_training)
    return float(episode_scores(env, tasks, episodes).mean())


# --- tokens --------------------------------------------------------------------------------------
def encode_completion(policy: agents.Policy, completion: object, max_tokens: int) -> list[int]:
    """A completion's tokens + `<eos>`, whatever it is: non-text becomes empty, characters the tokenizer
    does not know are dropped, and it is cut to `max_tokens` (so it never fails and never overflows)."""
    text = completion if isinstance(completion, str) else ""
    text = text[: 4 * max_tokens + 16]  # a huge string never reaches the tokenizer whole
    try:
        ids = policy.tokenizer.encode(text)
    except agents.TokenizerError:
        known = set(policy.tokenizer.chars)
        ids = policy.tokenizer.encode("".join(ch for ch in text if ch in known))
    return [*ids[:max_tokens], policy.tokenizer.eos_id]


def forward_completions(
    model: agents.GPT,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Teacher-forced logits at every completion token.

    prompts: `<bos>` + prompt ids per row; completions: the ids after it (ending in `<eos>`). Returns the
    logits predicting each completion token (N, V), the token ids (N,) and the row of each (N,), N being
    the completion tokens of the whole batch.
    """
    seqs = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
    x = torch.full((len(seqs), max(len(s) for s in seqs) - 1), pad_id, dtype=torch.long)
    for b, seq in enumerate(seqs):  # the last token is only ever a target
        x[b, : len(seq) - 1] = torch.tensor(seq[:-1])
    hidden, _ = model(x.to(device))  # (B, T, C), causal: right padding is never seen
    logits, targets, rows = model.completion_logits(
        hidden, [(s, len(p)) for s, p in zip(seqs, prompts, strict=True)]
    )
    return logits.float(), targets, rows  # (N, V), (N,), (N,)
