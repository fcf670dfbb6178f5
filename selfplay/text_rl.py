"""Stage 2 on a reward environment: the verifier stage and group-relative PPO, and the text pipeline.

RL (`rl.algorithm: grpo`). Actors (`selfplay.text_actor`, run by the same runtimes as self-play) sample
`group_size` completions of each prompt; each completion's advantage is its reward relative to its
group, A = (r - mean_group) / (std_group + eps). The learner minimises, per completion token t,

    -min(rho_t A, clip(rho_t, 1 - clip, 1 + clip) A) + kl_weight KL_t - entropy_weight H_t,
    rho_t = pi_T(t) / pi_behaviour(t),   KL_t = sum_v pi(v) (log pi(v) - log pi_ref(v))   (exact, over V)

averaged over the tokens of the batch, with pi_ref the frozen imitation policy and pi_T the policy at
the sampling temperature `rl.temperature` (what the actors sample from; H_t is its entropy). The reward
is the env's score (`programmatic`), the learned verifier's probability (`verifier`) or a mix; true
accuracy is always the env's own score of greedy episodes on held-out tasks.

TensorBoard (`RUN/tb/rl`): `rl/mean_reward`, `rl/sample_true_score` (env score of the same samples),
`rl/verifier_agreement`, `rl/completion_length`, `rl/true_accuracy` (held-out, greedy) and, with a
verifier, `rl/heldout_verifier_score` beside it: the verifier's opinion of those same greedy answers.
Reward hacking shows as that score (or `rl/mean_reward`) rising while `rl/true_accuracy` falls.

Files: `RUN/checkpoints/verifier` + `RUN/verifier.json`; `RUN/checkpoints/step_XXXXXX` (meta stage
`rl/<reward>`), the resume state `RUN/rl/state/` (`selfplay.resume`), `RUN/rl/stats.json` (what the
runtime delivered) and `RUN/rl.json` with the accuracy by step.
"""

from __future__ import annotations

import collections
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

import agents
from selfplay import loop, rundir
from selfplay import resume as resume_state
from selfplay.config import Config, RLConfig
from selfplay.io import atomic_write_text
from selfplay.loop import Learner, Stage
from selfplay.rundir import rel
from selfplay.text import (
    TaskSampler,
    accuracy,
    forward_completions,
    held_out_ids,
    held_out_tasks,
    make_env,
    max_new_tokens,
    play,
)
from selfplay.text_actor import VERIFIER_DIR, Completion, Group, make_text_actor, well_formed
from selfplay.text_imitate import config_hash, imitation_stage, transcripts_stage, transcripts_wanted

STATE_DIR = resume_state.RL_DIR


# --- the loss ------------------------------------------------------------------------------------
def rl_losses(
    policy: agents.Policy, batch: list[Completion], cfg: RLConfig, ref: agents.Policy | None = None
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO-clip per token on group-relative advantages, + KL to `ref`, - entropy; and its metrics."""
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
    loss = policy_loss + cfg.kl_weight * kl - cfg.entropy_weight * entropy
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
    relevant = {
        "imitation": config_hash(config),
        "rl": config.rl.model_dump(),
        "verifier": verifier_hash(config),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --- the learner loop ----------------------------------------------------------------------------
class _Evaluator:
    """True accuracy of greedy episodes on the held-out tasks (and the verifier's view of them)."""

    def __init__(self, config: Config, run_dir: Path) -> None:
        self.env = make_env(config)
        self.tasks = held_out_tasks(config, self.env, config.rl.eval_tasks)
        self.max_new_tokens = max_new_tokens(config, self.env)
        self.verifier = None
        if config.rl.reward != "programmatic":
            from agents.verifier import load_verifier

            self.verifier = load_verifier(run_dir / VERIFIER_DIR, device=config.rl.device)

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
        if self.verifier is not None:
            ok = [all(well_formed(self.env, c) for _, c in ep) for ep in episodes]
            v = self.verifier.score([ep[-1][0] for ep in episodes], [ep[-1][1] for ep in episodes])
            out["heldout_verifier_score"] = float(np.mean(np.where(ok, v, 0.0)))
        return out


class GroupRL(Stage):
    """Text RL as the stage-2 loop (`selfplay.loop`) runs it: groups of completions in, the GRPO loss,
    held-out true accuracy every `eval_every` steps, `RUN/rl.json` at the end."""

    name, state_dir, what = "rl", STATE_DIR, "an RL run"
    state_keys, stats_keys = ("collected", "episodes"), ("completions", "episodes")
    waiting_for, sample, extra_keys = "samples", Completion, ("evals",)

    def __init__(self, config: Config, run_dir: Path) -> None:
        super().__init__(config, run_dir)
        self.cfg = config.rl
        self.label = f"rl ({self.cfg.reward})"
        self.evaluate = _Evaluator(config, run_dir)
        self.evals: list[dict[str, float]] = []
        self.window = _Window()

    def make_runtime(self, current: Path, model, version: int):
        from selfplay.runtime import make_runtime

        return make_runtime(
            self.config, self.cfg, current, model, version=version, actor_factory=make_text_actor
        )

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
        return {"evals": self.evals}

    def restore(self, state: dict) -> None:
        self.evals = state["evals"]

    def record_eval(self, learner: Learner) -> dict[str, float]:
        m = self.evaluate(learner.policy)
        self.evals.append({"step": learner.step, **m})
        for k, v in m.items():
            learner.writer.add_scalar(f"rl/{k}", v, learner.step)
        return m

    def started(self, learner: Learner) -> None:
        if not self.evals:
            m = self.record_eval(learner)
            name = learner.history[-1].name
            print(f"rl: start {name}: held-out true accuracy {m['true_accuracy']:.3f}")

    def log(self, learner: Learner, metrics: dict[str, float]) -> None:
        self.window.log(learner.writer, learner.step, metrics, learner.runtime.depth(), learner.episodes)

    def stepped(self, learner: Learner) -> None:
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
            "evals": evals,
        }
        atomic_write_text(self.run_dir / "rl.json", json.dumps(summary, indent=2) + "\n")


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


# --- the verifier stage --------------------------------------------------------------------------
def verifier_hash(config: Config) -> str:
    relevant = {"imitation": config_hash(config), "verifier": config.verifier.model_dump()}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def initial_verifier(
    config: Config, policy: agents.Policy, run_dir: Path | None = None, *, progress: bool = True
):
    """The verifier before training, per `verifier.init` (see the config reference); `imitation:STEPS`
    trains (or reuses) its base in `run_dir/verifier_base` on the run's transcripts."""
    from agents.verifier import Verifier, new_verifier

    vc = config.verifier
    likelihood = 0.0 if vc.likelihood else None
    if vc.init == "policy":
        return Verifier.from_policy(policy, seed=vc.seed, likelihood=likelihood)
    if vc.init == "scratch":
        cfg = policy.model.cfg
        if vc.size is not None:
            cfg = agents.ModelConfig.preset(
                vc.size, vocab_size=cfg.vocab_size, block_size=cfg.block_size, positions=cfg.positions
            )
        return new_verifier(
            cfg, tokenizer=policy.tokenizer, device=str(policy.device), seed=vc.seed, likelihood=likelihood
        )
    if vc.init.startswith("imitation:"):
        if run_dir is None:
            raise ValueError("verifier.init: imitation:STEPS needs the run directory")
        base_dir = run_dir / "verifier_base"
        base_dir.mkdir(parents=True, exist_ok=True)
        data = Path(config.transcripts.path) if config.transcripts.path else run_dir / "transcripts.jsonl"
        path = imitation_stage(_base_config(config), data, base_dir, progress=progress)
        base = agents.load(path, device=str(policy.device))
        return Verifier.from_policy(base, seed=vc.seed, likelihood=likelihood)
    try:
        base = agents.load(vc.init, device=str(policy.device))
    except agents.CheckpointError as e:
        raise agents.CheckpointError(f"verifier.init: {e}") from None
    if base.meta.get("game") != config.game or base.tokenizer.to_dict() != policy.tokenizer.to_dict():
        raise agents.CheckpointError(
            f"verifier.init: {vc.init} is a {base.meta.get('game')!r} checkpoint with its own tokenizer; "
            f"it must be a {config.game!r} policy with the policy's tokenizer"
        )
    return Verifier.from_policy(base, seed=vc.seed, likelihood=likelihood)


def _base_config(config: Config) -> Config:
    """The config of the verifier's own imitation run (`verifier.init: imitation:STEPS`)."""
    vc = config.verifier
    if not vc.init.startswith("imitation:"):
        return config
    update: dict[str, Any] = {
        "imitation": config.imitation.model_copy(update={"max_steps": int(vc.init.split(":", 1)[1])})
    }
    if vc.size is not None:
        update["model"] = config.model.model_copy(update={"size": vc.size})
    return config.model_copy(update=update)


def verifier_stage(config: Config, run_dir: Path, imitation: Path, *, progress: bool = True) -> Path:
    """Train the outcome verifier on the imitation policy's samples labelled by the env's score, then
    measure it on held-out tasks: ROC-AUC, and best-of-N against greedy decoding. Reused when done."""
    from agents.verifier import save_verifier
    from selfplay import verifier as V

    vc, path = config.verifier, run_dir / VERIFIER_DIR
    if rundir.reusable(path, run_dir / "verifier.json", verifier_hash(config)):
        print(f"verifier: reusing {path}")
        return path
    if config.rl.threads:
        torch.set_num_threads(config.rl.threads)
    t0 = time.perf_counter()
    env = make_env(config)
    policy = agents.load(imitation, device=config.rl.device)
    new_tokens = max_new_tokens(config, env)
    sampling = {"temperature": vc.temperature, "max_new_tokens": new_tokens, "stop": env.stop}
    tasks = TaskSampler(env, held_out_ids(config, env), seed=[vc.seed, 31])(vc.tasks)
    data = V.label_completions(
        policy,
        [env.prompt_for(t) for t in tasks],
        lambda i, c: env.score(tasks[i], c),
        vc.samples,
        seed=vc.seed,
        **sampling,
    )
    if vc.with_expert:
        data += [V.Labelled(env.prompt_for(t), env.expert(t), 1.0, f"expert, task {t.id}") for t in tasks]
    verifier = initial_verifier(config, policy, run_dir, progress=progress)
    writer = SummaryWriter(str(run_dir / "tb" / "verifier"))
    pairs = V.make_pairs(data, max_per_prompt=vc.pairs, seed=vc.seed) if vc.pairs else []
    result = V.train(
        verifier,
        pointwise=data,
        pairwise=pairs,
        steps=vc.steps,
        batch_size=vc.batch_size,
        lr=vc.lr,
        lm_weight=vc.lm_weight,
        val_fraction=vc.val_fraction,
        seed=vc.seed,
        writer=writer,
        progress=progress,
    )
    # held out: tasks no stage trains on, completions sampled afresh from the imitation policy
    held = held_out_tasks(config, env, vc.eval_tasks)
    n = max(vc.samples, vc.best_of)
    held_data = V.label_completions(
        policy,
        [env.prompt_for(t) for t in held],
        lambda i, c: env.score(held[i], c),
        n,
        seed=vc.seed + 1,
        **sampling,
    )
    heldout = V.evaluate(verifier, pointwise=held_data)
    k = vc.best_of
    if vc.best_of_temperature is not None:  # best-of-N candidates at their own temperature
        cands = V.label_completions(
            policy,
            [env.prompt_for(t) for t in held],
            lambda i, c: env.score(held[i], c),
            k,
            seed=vc.seed + 2,
            **{**sampling, "temperature": vc.best_of_temperature},
        )
    else:
        cands = [r for i, r in enumerate(held_data) if i % n < k]
    scores = verifier.score([r.prompt for r in cands], [r.completion for r in cands]).reshape(len(held), k)
    labels = np.array([r.label for r in cands]).reshape(len(held), k)
    comps = np.array([r.completion for r in cands], dtype=object).reshape(len(held), k)
    picked = scores.argmax(1)
    majority = [collections.Counter(row).most_common(1)[0][0] for row in comps]
    measured = {
        "heldout_roc_auc": heldout.roc_auc,
        "heldout_accuracy": heldout.accuracy,
        "greedy_accuracy": accuracy(policy, env, held, max_new_tokens=new_tokens),
        "best_of_n_accuracy": float(labels[np.arange(len(held)), picked].mean()),
        "majority_of_n_accuracy": float(
            np.mean([env.score(t, c) for t, c in zip(held, majority, strict=True)])
        ),
        "sample_accuracy": float(labels.mean()),
        "pass_at_n": float((labels >= 0.5).any(1).mean()),
        "best_of_temperature": vc.best_of_temperature or vc.temperature,
    }
    for key, value in measured.items():
        writer.add_scalar(f"verifier/{key}", value, vc.steps)
    writer.close()
    summary = {
        "checkpoint": rel(path, run_dir),
        "train_completions": len(data),
        "train_positive_rate": float(np.mean([r.label for r in data])),
        "train_pairs": len(pairs),
        "heldout_tasks": len(held),
        "heldout_completions": len(held_data),
        "best_of": k,
        **measured,
        "val": asdict(result.final),
        "kept_step": result.best_step,  # the weights with the best validation ROC-AUC
        "seconds": round(time.perf_counter() - t0, 1),
    }
    meta = {
        "stage": "verifier",
        "game": config.game,
        "parent": rel(imitation, run_dir),
        "config_hash": verifier_hash(config),
    }
    save_verifier(verifier, path, meta={**meta, "metrics": measured})
    atomic_write_text(run_dir / "verifier.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"verifier: held-out ROC-AUC {measured['heldout_roc_auc']:.3f} on {len(held_data)} completions; "
        f"best-of-{k} {measured['best_of_n_accuracy']:.3f} vs greedy {measured['greedy_accuracy']:.3f} "
        f"(majority {measured['majority_of_n_accuracy']:.3f}, pass@{k} {measured['pass_at_n']:.3f})"
    )
    return path


# --- the pipeline --------------------------------------------------------------------------------
def outputs(config: Config, run_dir: Path, resume: bool) -> list[rundir.Output]:
    """Everything the text pipeline writes that an earlier run may have left, and when it may stay."""
    out = []
    if config.transcripts.path is None:
        meta, wanted = run_dir / "transcripts.meta.json", transcripts_wanted(config)
        out.append(
            rundir.Output(
                "transcripts", run_dir / "transcripts.jsonl", lambda: rundir.same_json(meta, wanted)
            )
        )
    ckpt, h = run_dir / "checkpoints" / "imitation", config_hash(config)
    out.append(rundir.Output("an imitation checkpoint", ckpt, lambda: rundir.made_with(ckpt, h)))
    if config.rl.algorithm != "none" and config.rl.reward != "programmatic":
        base, bh = run_dir / "verifier_base" / "checkpoints" / "imitation", config_hash(_base_config(config))
        out.append(rundir.Output("the verifier's base model", base, lambda: rundir.made_with(base, bh)))
        ver, vh = run_dir / VERIFIER_DIR, verifier_hash(config)
        out.append(rundir.Output("a verifier", ver, lambda: rundir.made_with(ver, vh)))
    return [*out, *rundir.stage2_outputs(run_dir, STATE_DIR, what="an RL run", keep=resume)]


def run(config: Config, run_dir: Path, *, resume: bool = False, progress: bool = True) -> Path | None:
    """Every text stage: expert transcripts, imitation, the verifier (when the reward needs it), RL."""
    data = transcripts_stage(config, run_dir)
    start = imitation_stage(config, data, run_dir, progress=progress)
    if config.rl.algorithm == "none":
        return start
    if config.rl.reward != "programmatic":
        verifier_stage(config, run_dir, start, progress=progress)
    final = train(config, run_dir, start, resume=resume, progress=progress)
    s = json.loads((run_dir / "rl.json").read_text())
    print(
        f"rl: final checkpoint {final}: held-out true accuracy {s['final_accuracy']:.3f} "
        f"(imitation {s['start_accuracy']:.3f}, best {s['best_accuracy']:.3f}) after {s['steps']} steps"
    )
    return final
