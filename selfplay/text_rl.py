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
import os
import random
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

import agents
from selfplay import resume as resume_state
from selfplay import rundir
from selfplay.config import Config, RLConfig
from selfplay.io import atomic_write_text
from selfplay.learner import Replay, add_counters, checkpoint_name
from selfplay.rundir import rel, resolve
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


def load_state(run_dir: Path) -> dict[str, Any] | None:
    """The resume state (`selfplay.resume`), its paths resolved and its replay as `Completion`s."""
    keys = ("checkpoint", "replay", "rng", "step", "version", "collected", "episodes", "elapsed", "history")
    state = resume_state.load(run_dir / STATE_DIR, (*keys, "evals", "runtime"))
    if state is None:
        return None
    try:
        state["checkpoint"] = resolve(state["checkpoint"], run_dir)
        state["history"] = [resolve(p, run_dir) for p in state["history"]]
        state["replay"] = [Completion.from_json(r) for r in state["replay"]]
        agents.read_meta(state["checkpoint"])
    except (KeyError, TypeError, ValueError) as e:  # CheckpointError is a ValueError
        where = run_dir / STATE_DIR / resume_state.STATE
        raise resume_state.ResumeError(f"{where}: cannot resume from it ({e})") from None
    return state


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


def train(config: Config, run_dir: Path, start: Path, *, resume: bool = False, progress: bool = True) -> Path:
    """RL from the imitation checkpoint `start`; returns the final checkpoint."""
    from selfplay.runtime import make_runtime

    cfg = config.rl
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    state = load_state(run_dir) if resume else None
    if not resume and (run_dir / STATE_DIR).exists():
        raise agents.CheckpointError(
            f"{run_dir} already holds an RL run; continue it with --resume {run_dir} "
            "or choose another run_dir"
        )
    current = state["checkpoint"] if state else start
    policy = agents.load(current, device=cfg.device)
    ref = agents.load(start, device=cfg.device) if cfg.kl_weight > 0 else None
    opt = agents.adamw(policy.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    replay = Replay(cfg.replay_size)
    rng = random.Random(cfg.seed)
    step = version = collected = episodes = 0
    elapsed = 0.0
    history: list[Path] = [start]
    evals: list[dict[str, float]] = []
    earlier: dict[str, float] = {}  # runtime counters of the runs this one resumes
    if state:
        opt.load_state_dict(state["optimizer"])
        replay.add(state["replay"])
        resume_state.set_rng_state(rng, state["rng"])
        step, version, collected, episodes = (
            state["step"],
            state["version"],
            state["collected"],
            state["episodes"],
        )
        elapsed, history, evals, earlier = (
            state["elapsed"],
            state["history"],
            state["evals"],
            state["runtime"],
        )
        print(f"rl: resuming at step {step} from {current}")
    writer = SummaryWriter(str(run_dir / "tb" / "rl"))
    evaluate = _Evaluator(config, run_dir)

    def record_eval() -> dict[str, float]:
        m = evaluate(policy)
        evals.append({"step": step, **m})
        for k, v in m.items():
            writer.add_scalar(f"rl/{k}", v, step)
        return m

    if not evals:
        m = record_eval()
        print(f"rl: start {current.name}: held-out true accuracy {m['true_accuracy']:.3f}")
    runtime = make_runtime(
        config,
        current,
        policy.model,
        version=version,
        pool=None,
        actor_factory=make_text_actor,
        actors=cfg.actors,
    )
    runtime.start()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"rl ({cfg.reward})", unit="step", disable=not progress)
    t_start = time.perf_counter() - elapsed
    window = _Window()
    metrics: dict[str, float] = {}
    try:
        while step < cfg.steps:
            if cfg.max_minutes is not None and time.perf_counter() - t_start > 60 * cfg.max_minutes:
                print(f"rl: {cfg.max_minutes} minute budget used at step {step}")
                break
            ready = len(replay) >= cfg.min_replay and step * cfg.batch_size < cfg.replay_ratio * collected
            if not ready:  # say what the learner waits for, or a stalled run looks like a hung one
                bar.set_postfix_str(_waiting(len(replay), collected, episodes, cfg))
            for _, groups, stats in runtime.collect(timeout=0.0 if ready else 1.0):
                for g in groups:
                    replay.add(g.completions)
                    collected += len(g.completions)
                    window.add(g, version)
                episodes += sum(len(g.episodes) for g in groups)
                window.add_stats(stats)
            if not (len(replay) >= cfg.min_replay and step * cfg.batch_size < cfg.replay_ratio * collected):
                continue
            policy.model.train()
            for group in opt.param_groups:
                group["lr"] = agents.lr_at(step, lr=cfg.lr, warmup_steps=cfg.warmup_steps)
            with policy.autocast():
                loss, metrics = rl_losses(policy, replay.sample(cfg.batch_size, rng), cfg, ref)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.model.parameters(), cfg.grad_clip)
            opt.step()
            policy.model.eval()
            step += 1
            bar.set_postfix_str("", refresh=False)
            bar.update()
            if step % cfg.publish_every == 0:
                version += 1
                runtime.publish(policy.model, version)
            if step % 10 == 0:
                window.log(writer, step, metrics, runtime.depth(), episodes)
            if step % cfg.eval_every == 0 or step == cfg.steps:
                m = record_eval()
                bar.set_postfix(acc=f"{m['true_accuracy']:.3f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                current = _checkpoint(config, run_dir, policy, step, version, history)
                history.append(current)
                elapsed = time.perf_counter() - t_start
                counters = add_counters(earlier, runtime.stats())
                resume_state.save(
                    run_dir / STATE_DIR,
                    opt.state_dict(),
                    {
                        "checkpoint": rel(current, run_dir),
                        "replay": [c.to_json() for c in replay.items],
                        "rng": resume_state.rng_state(rng),
                        "step": step,
                        "version": version,
                        "collected": collected,
                        "episodes": episodes,
                        "elapsed": elapsed,
                        "history": [rel(p, run_dir) for p in history],
                        "evals": evals,
                        "runtime": counters,
                    },
                )
                stats = {"step": step, "episodes": episodes, "completions": collected, **counters}
                stats.update(learner=f"{socket.gethostname()}:{os.getpid()}", pids=runtime.pids())
                atomic_write_text(run_dir / "rl" / "stats.json", json.dumps(stats, indent=2) + "\n")
    finally:
        runtime.close()
        bar.close()
    if history[-1] == start or int(agents.read_meta(history[-1])["step"]) != step:
        history.append(_checkpoint(config, run_dir, policy, step, version, history))
    if evals[-1]["step"] != step:
        record_eval()
    writer.close()
    summary = {
        "reward": cfg.reward,
        "checkpoint": rel(history[-1], run_dir),
        "steps": step,
        "episodes": episodes,
        "seconds": round(time.perf_counter() - t_start, 1),
        "start_accuracy": evals[0]["true_accuracy"],
        "final_accuracy": evals[-1]["true_accuracy"],
        "best_accuracy": max(e["true_accuracy"] for e in evals),
        "held_out_tasks": len(evaluate.tasks),
        "evals": evals,
    }
    atomic_write_text(run_dir / "rl.json", json.dumps(summary, indent=2) + "\n")
    return history[-1]


def _waiting(replay: int, collected: int, episodes: int, cfg: RLConfig) -> str:
    if replay < cfg.min_replay:
        return f"waiting for samples: replay {replay}/{cfg.min_replay} completions ({episodes} episodes)"
    return (
        f"waiting for samples: {collected} completions so far, each used {cfg.replay_ratio:g} times at most"
    )


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


def _checkpoint(config: Config, run_dir: Path, policy, step: int, version: int, history: list[Path]) -> Path:
    meta = {
        "game": config.game,
        "env_options": dict(config.env_options),
        "stage": f"rl/{config.rl.reward}",
        "step": step,
        "version": version,
        "parent": rel(history[-1], run_dir),
        "config_hash": rl_hash(config),
    }
    return agents.save(policy, run_dir / "checkpoints" / checkpoint_name(step), meta=meta)


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
