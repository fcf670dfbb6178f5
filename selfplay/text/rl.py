"""Stage 2 on a reward environment: group-relative PPO (the verifier it may use:
`selfplay.text.verifier.stage`).

RL (`rl.algorithm: grpo`). Actors (`selfplay.text.actor`, run by the same runtimes as self-play) sample
`group_size` completions of each prompt; each completion's advantage is its reward relative to its
group, A = (r - mean_group) / (std_group + eps) (unscaled with `rl.scale_rewards: none`). The learner
minimises, per completion token t,

    -min(rho_t A, clip(rho_t, 1 - clip, 1 + clip) A) + kl_weight KL_t,
    rho_t = pi_T(t) / pi_behaviour(t),   KL_t = sum_v pi(v) (log pi(v) - log pi_ref(v))   (exact, over V)

averaged over the tokens of the batch, with pi_ref the frozen imitation policy and pi_T the policy at
the temperature the actors sample at (1; its entropy is logged). The reward
is the env's score (`programmatic`), the learned verifier's probability (`verifier`) or a mix; true
accuracy is always the env's own score of greedy episodes on held-out tasks.

TensorBoard (`RUN/tb/rl`): `rl/mean_reward`, `rl/sample_true_score` (env score of the same samples),
`rl/verifier_agreement`, `rl/completion_length`, `rl/true_accuracy` (held-out, greedy) and, with a
verifier, `rl/heldout_verifier_score` beside it: the verifier's opinion of those same greedy answers,
and `rl/heldout_verifier_auc`, its ROC-AUC on them (how well it still tells the policy's current right
answers from wrong ones). Reward hacking shows as that score (or `rl/mean_reward`) rising while
`rl/true_accuracy` falls.

With `rl.verifier_refresh_every`, the learner retrains the verifier on the policy's latest samples every
so many steps (`selfplay.text.verifier.stage.refresh`; `RUN/checkpoints/verifier_step_XXXXXX`) and points the
reward at it (`RUN/rl/verifier.json`, which every actor follows); the verifier as trained is scored beside it
(`rl/heldout_frozen_verifier_auc`, `..._score`).

Files: `RUN/checkpoints/step_XXXXXX` (meta stage `rl/<reward>`), the resume state `RUN/rl/state/`
(`selfplay.core.resume`), `RUN/rl/stats.json` (what the runtime delivered), all written by the stage-2 loop
(`selfplay.core.loop`), and `RUN/rl.json` with the accuracy by step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

import agents
import selfplay.core.loop as loop
import selfplay.core.memory as memory
import selfplay.core.resume as resume_state
from agents.verifier import load_verifier
from selfplay.config import Config, RLConfig, fingerprint
from selfplay.core.loop import Learner, Stage
from selfplay.core.rundir import rel
from selfplay.core.training import config_hash
from selfplay.io import atomic_write_text
from selfplay.runtime import Actors, make_runtime
from selfplay.text.actor import (
    VERIFIER_DIR,
    Completion,
    Group,
    LiveVerifier,
    make_text_actor,
    point_verifier,
    well_formed,
)
from selfplay.text.episodes import (
    forward_completions,
    held_out_tasks,
    make_env,
    max_new_tokens,
    play,
)
from selfplay.text.verifier.metrics import roc_auc
from selfplay.text.verifier.stage import refresh, verifier_hash

STATE_DIR = resume_state.RL_DIR


# --- the loss ------------------------------------------------------------------------------------
def rl_losses(
    policy: agents.Policy, batch: list[Completion], cfg: RLConfig, ref: agents.Policy | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip per token on group-relative advantages, + KL to `ref`; and its metrics."""
    prompts, comps = [c.prompt for c in batch], [c.tokens for c in batch]
    logits, tgt, rows = forward_completions(
        policy.model, prompts, comps, policy.tokenizer.pad_id, policy.device
    )  # (N, V)
    logp_t = torch.log_softmax(logits / cfg.temperature, dim=-1)  # the sampling policy: ratio, entropy
    logp = torch.log_softmax(logits, dim=-1)  # the policy itself: KL to the reference
    new = logp_t.gather(1, tgt[:, None])[:, 0]  # (N,) log-prob of each completion token
    old = torch.as_tensor(np.concatenate([c.logprobs for c in batch]), dtype=torch.float32, device=new.device)
    adv = torch.tensor([c.advantage for c in batch], dtype=torch.float32, device=new.device)[rows]  # (N,)
    ratio = torch.exp(new - old)
    clipped = torch.clamp(ratio, 1 - cfg.clip, 1 + cfg.clip)
    policy_loss = -torch.min(ratio * adv, clipped * adv).mean()
    entropy = -(logp_t.exp() * logp_t).sum(-1).mean()
    kl = torch.zeros((), device=new.device)
    if ref is not None and cfg.kl_weight > 0:
        with torch.no_grad():
            ref_logits, _, _ = forward_completions(
                ref.model, prompts, comps, ref.tokenizer.pad_id, ref.device
            )
            ref_logp = torch.log_softmax(ref_logits, dim=-1)
        kl = (logp.exp() * (logp - ref_logp)).sum(-1).mean()
    loss = policy_loss + cfg.kl_weight * kl
    with torch.no_grad():
        log_ratio = new - old
        behaviour_kl = ((ratio - 1) - log_ratio).mean()  # k3 estimate of KL(behaviour || current)
    return loss, {
        "losses/policy": policy_loss.item(),
        "losses/kl": kl.item(),
        "losses/total": loss.item(),
        "charts/entropy": entropy.item(),
        "charts/clip_fraction": float(((ratio - 1).abs() > cfg.clip).float().mean()),
        "charts/behaviour_kl": behaviour_kl.item(),
    }


# --- checkpoints and resume ----------------------------------------------------------------------
def rl_hash(config: Config) -> str:
    return fingerprint(config, {"rl"}, imitation=config_hash(config), verifier=verifier_hash(config))


# --- the learner loop ----------------------------------------------------------------------------
class _Evaluator:
    """True accuracy of greedy episodes on the held-out tasks (and the verifier's view of them)."""

    def __init__(self, config: Config, run_dir: Path) -> None:
        self.env = make_env(config)
        self.tasks = held_out_tasks(config, self.env, config.rl.eval_tasks)
        self.max_new_tokens = max_new_tokens(config, self.env)
        self.verifier = self.frozen = None
        if config.rl.reward != "programmatic":
            self.verifier = LiveVerifier(run_dir, device=config.rl.device)
            if config.rl.verifier_refresh_every:  # the verifier as trained, beside its refreshes
                self.frozen = load_verifier(run_dir / VERIFIER_DIR, device=config.rl.device)

    @torch.no_grad()
    def __call__(self, policy: agents.Policy) -> dict[str, float]:
        was_training = policy.model.training
        policy.model.eval()
        episodes = play(policy, self.env, self.tasks, temperature=0.0, max_new_tokens=self.max_new_tokens)
        policy.model.train(was_training)
        true = [
            self.env.score_episode(t, [c for _, c in ep]).value
            for t, ep in zip(self.tasks, episodes, strict=True)
        ]
        out = {"true_accuracy": float(np.mean(true))}
        ok = [all(well_formed(self.env, c) for _, c in ep) for ep in episodes]
        last = [ep[-1] for ep in episodes]
        for name, verifier in (("", self.verifier), ("frozen_", self.frozen)):
            if verifier is not None:  # its score as the reward reads it; its ROC-AUC on these answers
                v = np.where(ok, verifier.score([p for p, _ in last], [c for _, c in last]), 0.0)
                out[f"heldout_{name}verifier_score"] = float(np.mean(v))
                auc = roc_auc(true, v)
                if np.isfinite(auc):  # both right and wrong answers among them
                    out[f"heldout_{name}verifier_auc"] = auc
        return out


class GroupRL(Stage):
    """Text RL as the stage-2 loop (`selfplay.core.loop`) runs it: groups of completions in, the GRPO loss,
    held-out true accuracy every `eval_every` steps, `RUN/rl.json` at the end."""

    name, state_dir, what = "rl", STATE_DIR, "an RL run"
    state_keys, stats_keys = ("collected", "episodes"), ("completions", "episodes")
    waiting_for, sample = "samples", Completion
    state_fields: ClassVar = {  # the reward's verifier now: a state from before refreshes lacks it
        "evals": (list[dict[str, resume_state.Number]], ...),
        "verifier": (resume_state.Stored | None, None),
    }

    def __init__(self, config: Config, run_dir: Path) -> None:
        super().__init__(config, run_dir)
        self.cfg = config.rl
        self.label = f"rl ({self.cfg.reward})"
        self.evaluate = _Evaluator(config, run_dir)
        self.evals: list[dict[str, float]] = []
        self.window = _Window()
        self.verifier = run_dir / VERIFIER_DIR  # the one the reward reads now (`rl.verifier_refresh_every`)

    def make_runtime(self, current: Path, model, version: int):
        actors = Actors(self.config, make_text_actor, str(current), self.cfg.actors)
        return make_runtime(actors, model, version=version)

    def ingest(self, items: list[Group], stats, version: int) -> tuple[list[Completion], int]:
        out: list[Completion] = []
        for g in items:
            out += g.completions
            self.window.add(g, version)
        self.window.add_stats(stats)
        return out, sum(len(g.episodes) for g in items)

    def loss(self, policy, batch, ref):
        return rl_losses(policy, batch, self.cfg, ref)

    def meta(self) -> dict:
        c = self.config
        stage = f"rl/{c.rl.reward}"
        return {"game": c.game, "env_options": dict(c.env_options), "stage": stage, "config_hash": rl_hash(c)}

    def state(self) -> dict:
        return {"evals": self.evals, "verifier": rel(self.verifier, self.run_dir)}

    def restore(self, state: dict) -> None:
        self.evals = state["evals"]
        where = self.run_dir / self.state_dir / resume_state.STATE
        self.verifier = resume_state.inside(
            state.get("verifier") or VERIFIER_DIR, self.run_dir, "verifier", where
        )

    def record_eval(self, learner: Learner) -> dict[str, float]:
        m = self.evaluate(learner.policy)
        self.evals.append({"step": learner.step, **m})
        for k, v in m.items():
            learner.writer.add_scalar(f"rl/{k}", v, learner.step)
        return m

    def started(self, learner: Learner) -> None:
        if self.cfg.reward != "programmatic":  # before any actor loads it
            point_verifier(self.run_dir, self.verifier)
        if not self.evals:
            m = self.record_eval(learner)
            name = learner.history[-1].name
            print(f"rl: start {name}: held-out true accuracy {m['true_accuracy']:.3f}")

    def log(self, learner: Learner, metrics: dict[str, float]) -> None:
        self.window.log(learner.writer, learner.step, metrics, learner.runtime.depth(), learner.episodes)

    def stepped(self, learner: Learner) -> None:
        every, minutes = self.cfg.verifier_refresh_every, self.cfg.max_minutes
        spent = minutes is not None and learner.elapsed >= 60 * minutes  # no reward left to read a refresh
        if every and learner.step % every == 0 and learner.step < self.cfg.steps and not spent:
            t0 = time.perf_counter()
            self.verifier = refresh(self.config, self.run_dir, learner.policy, self.verifier, learner.step)
            point_verifier(self.run_dir, self.verifier)
            learner.writer.add_scalar("rl/verifier_refresh_seconds", time.perf_counter() - t0, learner.step)
            meta = agents.read_meta(self.verifier)  # ROC-AUC on the policy's new answers
            for when, key in (("before", "val_before"), ("after", "val")):
                if "roc_auc" in meta.get(key, {}):
                    auc = meta[key]["roc_auc"]
                    learner.writer.add_scalar(f"rl/verifier_refresh_auc_{when}", auc, learner.step)
        if learner.step % self.cfg.eval_every == 0 or learner.step == self.cfg.steps:
            m = self.record_eval(learner)
            learner.bar.set_postfix(acc=f"{m['true_accuracy']:.3f}")

    def finished(self, learner: Learner) -> None:
        """The last evaluation, and `RUN/rl.json`: accuracy by step."""
        if self.evals[-1]["step"] != learner.step:
            self.record_eval(learner)
        evals = self.evals
        summary = {
            "reward": self.cfg.reward,
            "checkpoint": rel(learner.history[-1], self.run_dir),
            "steps": learner.step,
            "episodes": learner.episodes,
            "seconds": round(learner.elapsed, 1),
            "start_accuracy": evals[0]["true_accuracy"],
            "final_accuracy": evals[-1]["true_accuracy"],
            "best_accuracy": max(e["true_accuracy"] for e in evals),
            "held_out_tasks": len(self.evaluate.tasks),
            "peak_rss_mib": memory.peak_mib(),  # the learner's process (each actor is one of its own)
            "evals": evals,
        }
        if self.cfg.reward != "programmatic":
            summary["verifier"] = rel(self.verifier, self.run_dir)
        atomic_write_text(self.run_dir / "rl.json", json.dumps(summary, indent=2) + "\n")
        last = evals[-1]
        if "heldout_verifier_auc" in last and "heldout_frozen_verifier_auc" in last:
            print(
                f"rl: verifier ROC-AUC on the policy's held-out answers: refreshed "
                f"{last['heldout_verifier_auc']:.3f}, as trained {last['heldout_frozen_verifier_auc']:.3f}"
            )


def train(config: Config, run_dir: Path, start: Path, *, resume: bool = False, progress: bool = True) -> Path:
    """RL from the imitation checkpoint `start`; returns the final checkpoint."""
    return loop.train(GroupRL(config, run_dir), start, resume=resume, progress=progress)


class _Window:
    """What the actors did since the last log: rewards, true scores, verifier agreement, lengths."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.rewards: list[float] = []
        self.true: list[float] = []
        self.agree: list[float] = []
        self.lengths: list[int] = []
        self.lag: list[int] = []
        self.uniform = self.groups = self.episodes = self.tokens = 0
        self.net = self.busy = 0.0

    def add(self, g: Group, version: int) -> None:
        self.rewards += g.rewards.tolist()
        self.true += g.true_scores.tolist()
        if g.verifier_scores is not None:
            self.agree += ((g.verifier_scores >= 0.5) == (g.true_scores >= 0.5)).astype(float).tolist()
        self.lengths += g.lengths
        self.lag.append(version - g.version)
        self.groups += 1
        self.uniform += int(np.ptp(g.rewards) == 0)

    def add_stats(self, stats) -> None:
        self.episodes += stats.episodes
        self.tokens += stats.tokens
        self.net += stats.net_seconds
        self.busy += stats.seconds

    def log(
        self, writer: SummaryWriter, step: int, metrics: dict[str, float], depth: int, episodes: int
    ) -> None:
        dt = max(1e-9, time.perf_counter() - self.t)
        for k, v in metrics.items():
            writer.add_scalar(k, v, step)
        scalars = {
            "rl/mean_reward": self.rewards,
            "rl/sample_true_score": self.true,
            "rl/verifier_agreement": self.agree,
            "rl/completion_length": self.lengths,
            "charts/policy_lag": self.lag,
        }
        for k, xs in scalars.items():
            if xs:
                writer.add_scalar(k, float(np.mean(xs)), step)
        if self.groups:
            writer.add_scalar("rl/uniform_groups", self.uniform / self.groups, step)
        writer.add_scalar("charts/episodes_per_s", self.episodes / dt, step)
        writer.add_scalar("charts/tokens_per_s", self.tokens / dt, step)
        writer.add_scalar("charts/queue_depth", depth, step)
        writer.add_scalar("charts/episodes", episodes, step)
        if self.busy > 0:
            writer.add_scalar("charts/actor_scoring_share", self.net / self.busy, step)
        self.__init__()
