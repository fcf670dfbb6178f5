"""The RL actor for reward environments: sample groups of completions, score them, hand them over.

`TextActor.step()` draws `prompts_per_step` training tasks, plays `group_size` episodes of each with the
latest weights (every turn of every episode in one batched `generate` call), scores each episode with
the reward and returns one `Group` per task: the completions' tokens, their behaviour log-probs (a
teacher-forced pass with the same weights) and their group-relative advantages. It has the contract the
game `Actor` has (`policy`, `version`, `step()`, `take_stats()`), so the same runtimes run it.

A reward is `reward(tasks, episodes) -> (rewards, true scores, verifier scores or None)`; a completion
that is not text, empty, too long or outside the env's charset earns 0 whatever the reward, and nothing
a policy writes raises (`guarded_reward`).
"""

from __future__ import annotations

import json
import reprlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import agents
import envs
import selfplay.core.resume as resume_state
from agents.verifier import load_verifier
from selfplay.config import Config
from selfplay.core.rundir import RunFileError, read_json, rel, resolve
from selfplay.io import atomic_write_text
from selfplay.text.episodes import (
    TaskSampler,
    encode_completion,
    episode_scores,
    forward_completions,
    held_out_ids,
    make_env,
    max_new_tokens,
    play,
)

Episode = list[tuple[str, str]]  # (prompt, completion) per turn
Reward = Callable[[Sequence[envs.Task], Sequence[Episode]], tuple[np.ndarray, np.ndarray, np.ndarray | None]]

VERIFIER_DIR = "checkpoints/verifier"
VERIFIER_NOW = "rl/verifier.json"  # which verifier the RL reward reads now: the trained one or a refresh


@dataclass(frozen=True)
class Completion:
    """One turn the policy wrote, as the learner trains on it."""

    prompt: tuple[int, ...]  # <bos> + prompt ids
    tokens: tuple[int, ...]  # completion ids + <eos>
    logprobs: np.ndarray  # (len(tokens),) behaviour log-prob of each token
    advantage: float  # group-relative, shared by every turn of the episode
    version: int  # weights version that sampled it

    def to_json(self) -> list:
        logprobs = [float(x) for x in self.logprobs]
        return [list(self.prompt), list(self.tokens), logprobs, float(self.advantage), self.version]

    @classmethod
    def from_json(cls, row: list) -> Completion:
        """The completion `to_json` wrote, every value checked (a `ValueError` says which is wrong)."""
        if not isinstance(row, list) or len(row) != 5:
            raise ValueError(f"a completion is a list of 5 values, got {reprlib.repr(row)}")
        prompt, tokens, logprobs, advantage, version = row
        for name, ids in (("prompt", prompt), ("tokens", tokens)):
            if not (isinstance(ids, list) and ids and all(map(resume_state.is_count, ids))):
                raise ValueError(f"{name}: a list of token ids, got {reprlib.repr(ids)}")
        logprobs = resume_state.finite_array(logprobs, "logprobs", shape=(len(tokens),))
        resume_state.finite_array(advantage, "advantage", shape=())
        if not resume_state.is_count(version):
            raise ValueError(f"version: a count, got {version!r}")
        return cls(tuple(prompt), tuple(tokens), logprobs, advantage, version)


@dataclass
class Group:
    """The `group_size` episodes of one task."""

    task: envs.Task
    episodes: list[Episode]
    rewards: np.ndarray  # (G,) what the learner optimises
    true_scores: np.ndarray  # (G,) the env's own score, always
    verifier_scores: np.ndarray | None  # (G,) when a verifier is part of the reward
    completions: list[Completion] = field(default_factory=list)  # empty when the advantages are all 0
    lengths: list[int] = field(default_factory=list)  # completion tokens per episode, <eos> excluded
    version: int = 0
    uid: str = ""  # unique per group of a run (stamped by the runtime): nothing is counted twice


@dataclass
class TextStats:
    """Work done since the last report."""

    seconds: float = 0.0
    net_seconds: float = 0.0
    episodes: int = 0
    groups: int = 0
    tokens: int = 0


# --- rewards -------------------------------------------------------------------------------------
def well_formed(env: envs.RewardEnv, completion: object) -> bool:
    """Whether the env would read `completion` at all: text, at most `max_completion_chars`, non-empty
    up to its first stop string, within `charset`."""
    if not isinstance(completion, str) or len(completion) > env.max_completion_chars:
        return False
    cut = min((i for i in (completion.find(s) for s in env.stop if s) if i >= 0), default=None)
    text = completion[:cut].strip()
    return bool(text) and set(text) <= set(env.charset)


def programmatic_reward(env: envs.RewardEnv) -> Reward:
    """The env's own score of each episode."""

    def reward(tasks, episodes):
        true = episode_scores(env, tasks, episodes)
        return true, true, None

    return reward


def verifier_reward(env: envs.RewardEnv, verifier, weight: float = 1.0) -> Reward:
    """`weight * verifier + (1 - weight) * env score`; the verifier reads each episode's last turn."""

    def reward(tasks, episodes):
        true = episode_scores(env, tasks, episodes)
        last = [ep[-1] if ep else ("", "") for ep in episodes]
        ok = np.array([bool(ep) and all(well_formed(env, c) for _, c in ep) for ep in episodes])
        v = np.zeros(len(episodes))
        if ok.any():
            idx = np.flatnonzero(ok)
            v[idx] = verifier.score([last[i][0] for i in idx], [last[i][1] for i in idx])
        v = np.nan_to_num(np.clip(v, 0.0, 1.0))
        return weight * v + (1 - weight) * true, true, v

    return reward


class LiveVerifier:
    """The verifier the RL reward reads now: the one `RUN/rl/verifier.json` names (the verifier stage's,
    or the newest refresh of it during RL; `RUN/checkpoints/verifier` without that file), loaded again
    whenever the file changes, so actors in any process follow the learner's refreshes."""

    def __init__(self, run_dir: str | Path, device: str = "cpu") -> None:
        self.run_dir, self.device = Path(run_dir), device
        self.named: str | None = None
        self.verifier = None

    def current(self):
        try:
            named = read_json(self.run_dir / VERIFIER_NOW).get("checkpoint")
        except RunFileError:
            if (self.run_dir / VERIFIER_NOW).exists():
                raise
            named = VERIFIER_DIR
        if self.verifier is None or named != self.named:
            self.verifier = load_verifier(resolve(named, self.run_dir), device=self.device)
            self.named = named
        return self.verifier

    def score(self, prompts, completions) -> np.ndarray:
        return self.current().score(prompts, completions)


def point_verifier(run_dir: Path, checkpoint: Path) -> None:
    """Make `checkpoint` the verifier the RL reward reads (`LiveVerifier`)."""
    atomic_write_text(run_dir / VERIFIER_NOW, json.dumps({"checkpoint": rel(checkpoint, run_dir)}) + "\n")


def guarded_reward(reward: Reward) -> Reward:
    """`reward`, with anything it raises or returns out of [0, 1] turned into 0 for the episodes at fault
    (one episode at a time when the batch fails), so bad completions never stop training."""

    def safe(tasks, episodes):
        try:
            r, t, v = reward(tasks, episodes)
            return _clean(r), _clean(t), None if v is None else _clean(v)
        except Exception:
            outs = []
            for task, ep in zip(tasks, episodes, strict=True):
                try:
                    outs.append(reward([task], [ep]))
                except Exception:
                    outs.append((np.zeros(1), np.zeros(1), None))
            v = [o[2] for o in outs]
            has_v = any(x is not None for x in v)
            return (
                _clean(np.concatenate([o[0] for o in outs])),
                _clean(np.concatenate([o[1] for o in outs])),
                _clean(np.concatenate([x if x is not None else np.zeros(1) for x in v])) if has_v else None,
            )

    return safe


def _clean(x) -> np.ndarray:
    return np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)


def make_reward(config: Config, env: envs.RewardEnv, *, device: str = "cpu") -> Reward:
    """The configured reward (`rl.reward`), loading the run's verifier when it needs one."""
    rl = config.rl
    if rl.reward == "programmatic":
        return guarded_reward(programmatic_reward(env))
    verifier = LiveVerifier(config.run_dir, device=device)
    verifier.current()  # a missing or broken verifier stops the actor here, not inside the guard
    weight = 1.0 if rl.reward == "verifier" else rl.verifier_weight
    return guarded_reward(verifier_reward(env, verifier, weight))


def group_advantages(rewards: np.ndarray, scale: bool = True, eps: float = 1e-6) -> np.ndarray:
    """r - mean within one group, over (std + eps) where `scale`; all zeros when the rewards are all equal.

    Unscaled (`rl.scale_rewards: none`, as in Dr. GRPO) a group whose rewards barely differ moves the
    policy barely: scaled, a verifier's near-equal scores of answers that are all wrong push as hard as a
    right answer beside wrong ones, and RL climbs the verifier's noise."""
    std = rewards.std()
    if std < eps:
        return np.zeros_like(rewards)
    return (rewards - rewards.mean()) / (std + eps if scale else 1.0)


# --- the actor -----------------------------------------------------------------------------------
@torch.no_grad()
def token_logprobs(policy: agents.Policy, prompts, completions, temperature: float = 1.0) -> list[np.ndarray]:
    """Log-prob of each completion token under `policy` sampling at `temperature` (teacher-forced), one
    array per completion."""
    with policy.autocast():
        logits, tgt, _ = forward_completions(
            policy.model, prompts, completions, policy.tokenizer.pad_id, policy.device
        )
    logp = torch.log_softmax(logits / temperature, dim=-1)
    lp = logp.gather(1, tgt[:, None])[:, 0].float().cpu().numpy()
    return np.split(lp, np.cumsum([len(c) for c in completions])[:-1])


class TextActor:
    """Samples `group_size` episodes of `prompts_per_step` tasks per `step()`."""

    def __init__(
        self,
        config: Config,
        env: envs.RewardEnv,
        policy: agents.Policy,
        reward: Reward,
        *,
        actor_id: int = 0,
        seed: int = 0,
    ) -> None:
        self.cfg, self.env, self.policy, self.reward = config.rl, env, policy, reward
        self.actor_id, self.version = actor_id, 0
        self.tasks = TaskSampler(env, held_out_ids(config, env), seed=[seed, 17])
        self.rng = np.random.default_rng([seed, 29])
        self.max_new_tokens = max_new_tokens(config, env)
        self.stats = TextStats()
        self.next_tasks = self.tasks(self.cfg.prompts_per_step)  # drawn ahead: begun, in flight
        self.started = len(self.next_tasks)  # groups begun (the runtime counts those a death loses)

    def step(self) -> list[Group]:
        cfg, t0 = self.cfg, time.perf_counter()
        tasks, self.next_tasks = self.next_tasks, self.tasks(cfg.prompts_per_step)
        self.started += len(self.next_tasks)
        flat = [t for t in tasks for _ in range(cfg.group_size)]
        self.policy.model.eval()
        episodes = play(
            self.policy,
            self.env,
            flat,
            temperature=cfg.temperature,
            max_new_tokens=self.max_new_tokens,
            seed=int(self.rng.integers(2**31)),
        )
        rewards, true, vscores = self.reward(flat, episodes)
        turns = [
            (i, self.policy.encode_prompt(p), encode_completion(self.policy, c, self.max_new_tokens))
            for i, ep in enumerate(episodes)
            for p, c in ep
        ]
        groups, G = [], cfg.group_size
        scale = cfg.scale_rewards == "group"
        adv = np.concatenate(
            [group_advantages(rewards[k * G : (k + 1) * G], scale) for k in range(len(tasks))]
        )
        lengths = np.zeros(len(flat), dtype=int)
        for i, _, c in turns:
            lengths[i] += len(c) - 1
        keep = [x for x in turns if adv[x[0]] != 0]  # a group whose rewards are all equal teaches nothing
        t_net = time.perf_counter()
        lps = (
            token_logprobs(self.policy, [p for _, p, _ in keep], [c for _, _, c in keep], cfg.temperature)
            if keep
            else []
        )
        self.stats.net_seconds += time.perf_counter() - t_net
        by_episode: dict[int, list[Completion]] = {}
        for (i, p, c), lp in zip(keep, lps, strict=True):
            by_episode.setdefault(i, []).append(
                Completion(tuple(p), tuple(c), lp, float(adv[i]), self.version)
            )
        for k, task in enumerate(tasks):
            sl = slice(k * G, (k + 1) * G)
            groups.append(
                Group(
                    task,
                    episodes[sl],
                    rewards[sl],
                    true[sl],
                    None if vscores is None else vscores[sl],
                    [c for i in range(k * G, (k + 1) * G) for c in by_episode.get(i, [])],
                    lengths[sl].tolist(),
                    self.version,
                )
            )
        self.stats.episodes += len(flat)
        self.stats.groups += len(groups)
        self.stats.tokens += int(lengths.sum())
        self.stats.seconds += time.perf_counter() - t0
        return groups

    def take_stats(self) -> TextStats:
        stats, self.stats = self.stats, TextStats()
        return stats


def make_text_actor(
    actor_id: int, config: Config, ckpt: str, pool_path: str | None = None, *, policy=None
) -> TextActor:
    """The runtime's `actor_factory` for reward environments (module level, so spawned processes can
    import it); `policy`, when given, replaces loading `ckpt`."""
    cfg = config.rl
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    env = make_env(config)
    if policy is None:
        policy = agents.load(ckpt, device=cfg.actor_device)
    reward = make_reward(config, env, device=cfg.actor_device)
    return TextActor(config, env, policy, reward, actor_id=actor_id, seed=cfg.seed * 1000 + 1 + actor_id)
