"""Reward environments end to end on tiny budgets: text imitation, the RL loss, the verifier and RL stages
through the main command, and bad completions inside training."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import agents
import envs
import selfplay.text.actor as text_actor
import selfplay.text.episodes as text
import selfplay.text.imitate as text_imitate
import selfplay.text.rl as text_rl
from selfplay.config import ConfigError, load_config
from selfplay.core.transcript_stage import transcripts_stage
from selfplay.run import main

ROOT = Path(__file__).resolve().parents[1]

TINY = [
    "env_options={digits: 1, ops: '+'}",
    "transcripts.games=400",
    "model.size=nano",
    "model.block_size=16",
    "imitation.max_steps=40",
    "imitation.eval_every=20",
    "imitation.eval_positions=20",
    "rl.max_new_tokens=3",
    "rl.steps=6",
    "rl.checkpoint_every=3",
    "rl.eval_every=3",
    "rl.eval_tasks=20",
    "rl.prompts_per_step=8",
    "rl.group_size=4",
    "rl.batch_size=16",
    "rl.min_replay=8",
    "rl.replay_size=64",
    "rl.actors=0",
    "verifier.tasks=40",
    "verifier.samples=4",
    "verifier.steps=10",
    "verifier.batch_size=32",
    "verifier.eval_tasks=20",
    "verifier.best_of=4",
]


def tiny_config(tmp_path, *extra):
    return load_config(ROOT / "configs/arithmetic.yaml", [f"run_dir={tmp_path / 'run'}", *TINY, *extra])


@pytest.fixture(scope="module")
def nano_policy():
    cfg = agents.ModelConfig.preset("nano", vocab_size=agents.CharTokenizer().vocab_size, block_size=32)
    return agents.new_policy(cfg, device="cpu", seed=0, meta={"game": "arithmetic"})


def test_text_imitation_beats_an_untrained_model(tmp_path):
    config = tiny_config(
        tmp_path, "imitation.max_steps=300", "imitation.eval_every=100", "imitation.lr=0.003"
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt = text_imitate.imitation_stage(config, transcripts_stage(config, run_dir), run_dir)
    summary = json.loads((run_dir / "imitation.json").read_text())
    assert summary["untrained_accuracy"] == 0.0
    assert summary["held_out_accuracy"] >= 0.5
    assert summary["peak_rss_mib"] > 50  # torch and a model, at least
    assert agents.read_meta(ckpt)["stage"] == "imitation"
    env = text.make_env(config)
    held = {t.id for t in text.held_out_tasks(config, env, 20)}
    examples = text_imitate.build_examples(
        [json.loads(line) for line in (run_dir / "transcripts.jsonl").open()],
        agents.load(ckpt, device="cpu"),
        text.held_out_ids(config, env),
        source="t",
    )
    assert not {e.task for e in examples} & held


def test_rl_loss_moves_probability_toward_the_higher_advantage(tmp_path, nano_policy):
    cfg = tiny_config(tmp_path, "rl.kl_weight=0").rl
    policy = agents.new_policy(nano_policy.model.cfg, device="cpu", seed=1)
    prompt = tuple(policy.encode_prompt("3+4="))
    good, bad = (tuple(text.encode_completion(policy, t, 3)) for t in ("7", "8"))

    def logps():
        return [float(lp.sum()) for lp in text_actor.token_logprobs(policy, [prompt, prompt], [good, bad])]

    before = logps()
    old = text_actor.token_logprobs(policy, [prompt, prompt], [good, bad])
    batch = [
        text_actor.Completion(prompt, good, old[0], 1.0, 0),
        text_actor.Completion(prompt, bad, old[1], -1.0, 0),
    ]
    opt = torch.optim.Adam(policy.model.parameters(), lr=1e-3)
    for _ in range(5):
        loss, metrics = text_rl.rl_losses(policy, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = logps()
    assert after[0] > before[0] and after[1] < before[1]
    assert metrics["losses/kl"] == 0.0 and 0.0 <= metrics["charts/clip_fraction"] <= 1.0
    # the KL term alone pulls a moved policy back toward its reference
    ref = agents.new_policy(nano_policy.model.cfg, device="cpu", seed=1)
    kl_cfg = cfg.model_copy(update={"kl_weight": 1.0})
    zero = [text_actor.Completion(c.prompt, c.tokens, c.logprobs, 0.0, 0) for c in batch]
    _, m0 = text_rl.rl_losses(policy, zero, kl_cfg, ref)
    for _ in range(5):
        loss, _ = text_rl.rl_losses(policy, zero, kl_cfg, ref)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _, m1 = text_rl.rl_losses(policy, zero, kl_cfg, ref)
    assert 0 < m1["losses/kl"] < m0["losses/kl"]


def test_group_advantages_are_relative_to_the_group():
    adv = text_actor.group_advantages(np.array([1.0, 0.0, 0.0, 1.0]))
    assert np.allclose(adv, [1, -1, -1, 1], atol=1e-4)
    assert not text_actor.group_advantages(np.array([0.5, 0.5, 0.5])).any()
    # unscaled (rl.scale_rewards: none): near-equal scores (a verifier's of wrong answers) barely move it
    near = np.array([0.02, 0.04, 0.03, 0.03])
    assert np.allclose(text_actor.group_advantages(near, scale=False), near - 0.03)
    assert np.abs(text_actor.group_advantages(near)).max() > 1  # scaled, as hard as right beside wrong


def test_the_reward_follows_the_verifier_the_run_points_at(tmp_path, nano_policy):
    from agents.verifier import Verifier, save_verifier

    config = tiny_config(tmp_path, "rl.reward=verifier")
    run = Path(config.run_dir)
    made = {}
    for name, seed in (("verifier", 0), ("verifier_step_000010", 1)):
        v = Verifier.from_policy(nano_policy, seed=seed)
        made[name] = (v, save_verifier(v, run / "checkpoints" / name, meta={"stage": "verifier"}))
    env = text.make_env(config)
    tasks = text.held_out_tasks(config, env, 6)
    episodes = [[(env.prompt_for(t), env.expert(t))] for t in tasks]
    reward = text_actor.make_reward(config, env)

    def expected(name):
        return made[name][0].score([e[0][0] for e in episodes], [e[0][1] for e in episodes])

    assert np.allclose(reward(tasks, episodes)[0], expected("verifier"), atol=1e-5)  # no pointer yet
    text_actor.point_verifier(run, made["verifier_step_000010"][1])
    assert np.allclose(reward(tasks, episodes)[0], expected("verifier_step_000010"), atol=1e-5)
    assert not np.allclose(expected("verifier"), expected("verifier_step_000010"))


@pytest.mark.parametrize("reward", ["programmatic", "verifier"])
def test_main_command_runs_every_text_stage(tmp_path, reward, capsys):
    run_dir = tmp_path / "run"
    actors = "1" if reward == "programmatic" else "0"  # one run through spawned actor processes
    argv = [str(ROOT / "configs/arithmetic.yaml"), f"run_dir={run_dir}", *TINY, f"rl.reward={reward}"]
    argv += [f"rl.actors={actors}", "verifier.best_of_temperature=0.5"]
    if reward == "verifier":
        argv += ["verifier.likelihood=true", "verifier.lm_weight=1.0"]
    argv.append("--no-progress")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "imitation: checkpoint" in out and "rl: final checkpoint" in out
    for step in (3, 6):
        meta = agents.read_meta(run_dir / f"checkpoints/step_{step:06d}")
        assert meta["step"] == step and meta["stage"] == f"rl/{reward}" and meta["game"] == "arithmetic"
    assert agents.read_meta(run_dir / "checkpoints/step_000003")["parent"].endswith("imitation")
    summary = json.loads((run_dir / "rl.json").read_text())
    assert [e["step"] for e in summary["evals"]] == [0, 3, 6]
    assert 0.0 <= summary["final_accuracy"] <= 1.0
    assert summary["peak_rss_mib"] > 50  # the learner's process: torch and a model, at least
    assert json.loads((run_dir / "rl/stats.json").read_text())["peak_rss_mib"] > 50
    assert (run_dir / "tb/rl").is_dir() and any(p.stat().st_size for p in (run_dir / "tb/rl").glob("events*"))
    if reward == "verifier":
        v = json.loads((run_dir / "verifier.json").read_text())
        assert {"heldout_roc_auc", "best_of_n_accuracy", "greedy_accuracy"} <= set(v)
        assert v["peak_rss_mib"] > 50
        assert v["best_of_temperature"] == 0.5 and 0.0 <= v["best_of_n_accuracy"] <= v["pass_at_n"]
        assert "best-of-4" in out
        assert "heldout_verifier_score" in summary["evals"][-1]
        weight = agents.load_verifier(run_dir / "checkpoints/verifier", device="cpu").likelihood_weight
        assert weight is not None and weight.item() != 0.0  # it starts at 0 and is trained
    else:
        assert not (run_dir / "checkpoints/verifier").exists()
    assert main(argv) == 2  # a second start would overwrite the run: refused
    assert "--resume" in capsys.readouterr().err
    assert main(["--resume", str(run_dir), "rl.steps=9", "--no-progress"]) == 0  # continues, reusing stages
    out = capsys.readouterr().out
    assert "imitation: reusing" in out and "resuming at step 6" in out
    assert agents.read_meta(run_dir / "checkpoints/step_000009")["step"] == 9


def test_text_beyond_runs_on_a_teachers_data_and_a_verifier_without_expert_answers(tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = [str(ROOT / "configs/text_beyond.yaml"), f"run_dir={run_dir}", *TINY, "rl.reward=verifier"]
    assert main([*argv, "rl.actors=0", "rl.max_minutes=5", "--no-progress"]) == 0
    records = [json.loads(line) for line in (run_dir / "transcripts.jsonl").read_text().splitlines()]
    assert {r["teacher"] for r in records} == {"seldom_carries"}
    assert 0.0 < np.mean([r["score"] for r in records]) < 1.0  # its mistakes are kept, scored
    assert json.loads((run_dir / "transcripts.meta.json").read_text())["teacher"] == "seldom_carries"
    v = json.loads((run_dir / "verifier.json").read_text())
    assert v["train_completions"] == 40 * 4  # the policy's samples alone: with_expert is false
    summary = json.loads((run_dir / "rl.json").read_text())
    assert summary["reward"] == "verifier" and "heldout_verifier_score" in summary["evals"][-1]


BAD = ["", "9" * 100_000, None, b"7", 123, ["7"], "\x00\u2603", "   \n", "RIGHT"]  # the last: the answer


@pytest.mark.parametrize("reward", ["programmatic", "verifier"])
def test_bad_completions_score_zero_inside_training(tmp_path, nano_policy, monkeypatch, reward):
    config = tiny_config(tmp_path, "rl.prompts_per_step=3", f"rl.group_size={len(BAD)}")
    env = text.make_env(config)

    def generate(self, prompts, **kwargs):
        out = [BAD[i % len(BAD)] for i in range(len(prompts))]
        right = [str(sum(map(int, p[:-1].split("+")))) for p in prompts]
        return [r if o == "RIGHT" else o for r, o in zip(right, out, strict=True)]

    monkeypatch.setattr(agents.Policy, "generate", generate)
    policy = agents.new_policy(nano_policy.model.cfg, device="cpu", seed=0)
    if reward == "verifier":
        from agents.verifier import Verifier

        fn = text_actor.verifier_reward(env, Verifier.from_policy(policy, seed=0))
    else:
        fn = text_actor.programmatic_reward(env)
    actor = text_actor.TextActor(config, env, policy, text_actor.guarded_reward(fn), seed=0)
    groups = actor.step()
    for g in groups:
        assert len(g.rewards) == len(BAD)
        assert not g.rewards[:-1].any() and not g.true_scores[:-1].any()  # only the answer scores
        assert g.true_scores[-1] == 1.0
        if reward == "verifier":
            assert not g.verifier_scores[:-1].any()
    comps = [c for g in groups for c in g.completions]
    assert comps and all(len(c.tokens) <= 4 for c in comps)  # huge ones cut to max_new_tokens + <eos>
    loss, _ = text_rl.rl_losses(policy, comps, config.rl)
    loss.backward()
    assert torch.isfinite(loss)

    def broken(tasks, episodes):
        raise RuntimeError("scorer bug")

    r, t, v = text_actor.guarded_reward(broken)(*[[g.task] for g in groups[:1]], [groups[0].episodes[0]])
    assert r.tolist() == [0.0] and t.tolist() == [0.0] and v is None


def test_multi_turn_env_samples_and_trains(tmp_path):
    multi = ["game=guess_number", "env_options={high: 16, max_turns: 5}", "model.block_size=128"]
    multi += ["rl.max_new_tokens=3", "rl.prompts_per_step=4", "rl.group_size=4"]
    multi += ["rl.eval_tasks=3", "imitation.eval_positions=3", "verifier.eval_tasks=3"]  # 16 tasks in all
    config = load_config(ROOT / "configs/arithmetic.yaml", [f"run_dir={tmp_path}", *multi])
    env = text.make_env(config)
    cfg = agents.ModelConfig.preset("nano", vocab_size=agents.CharTokenizer().vocab_size, block_size=128)
    policy = agents.new_policy(cfg, device="cpu", seed=0)
    actor = text_actor.TextActor(config, env, policy, text_actor.make_reward(config, env), seed=0)
    groups = actor.step()
    assert len(groups) == 4 and all(1 <= len(ep) <= 5 for g in groups for ep in g.episodes)
    for g in groups:
        for ep, score in zip(g.episodes, g.true_scores, strict=True):
            assert score == env.score_episode(g.task, [c for _, c in ep]).value
    comps = [c for g in groups for c in g.completions]
    if comps:
        loss, _ = text_rl.rl_losses(policy, comps, config.rl)
        assert torch.isfinite(loss)


def test_config_accepts_reward_envs_and_checks_them(tmp_path):
    config = tiny_config(tmp_path)
    assert config.is_reward_env and config.env_options == {"digits": 1, "ops": "+"}
    with pytest.raises(ConfigError, match=r"env_options: .*unknown option.*'digit'"):
        tiny_config(tmp_path, "env_options={digit: 2}")
    with pytest.raises(ConfigError, match=r"env_options: .*digits"):
        tiny_config(tmp_path, "env_options={digits: 0}")
    with pytest.raises(ConfigError, match=r"model.block_size = 8 is shorter"):
        tiny_config(tmp_path, "model.block_size=8")
    with pytest.raises(ConfigError, match=r"needs a single-turn environment"):
        tiny_config(
            tmp_path, "game=guess_number", "env_options={}", "rl.reward=verifier", "model.block_size=256"
        )
    with pytest.raises(ConfigError, match=r"env_options: the game 'tictactoe' takes no options"):
        load_config(ROOT / "configs/tictactoe.yaml", ["env_options={digits: 2}"])
    with pytest.raises(
        ConfigError, match=r"unknown game 'go'; known: connect_four.*reward environments: arith"
    ):
        tiny_config(tmp_path, "game=go")
    assert "arithmetic" in envs.names(kind="reward")


def test_verifier_init_policy_scratch_or_a_checkpoint(tmp_path, nano_policy, ttt_nano):
    import torch

    from selfplay.text.verifier.stage import initial_verifier

    def first_weight(v):
        return v.model.state_dict()["tok_emb.weight"]

    base = first_weight(nano_policy)
    v = initial_verifier(tiny_config(tmp_path), nano_policy)
    assert torch.equal(first_weight(v), base)
    v = initial_verifier(tiny_config(tmp_path, "verifier.init=scratch", "verifier.seed=1"), nano_policy)
    assert not torch.equal(first_weight(v), base) and first_weight(v).shape == base.shape
    assert v.likelihood_weight is None
    v = initial_verifier(tiny_config(tmp_path, "verifier.likelihood=true"), nano_policy)
    assert v.likelihood_weight.item() == 0.0 and v.likelihood_weight.requires_grad
    stronger = agents.save(nano_policy, tmp_path / "stronger")
    v = initial_verifier(tiny_config(tmp_path, f"verifier.init={stronger}"), nano_policy)
    assert torch.equal(first_weight(v), base)
    with pytest.raises(agents.CheckpointError, match=r"verifier\.init: .* 'tictactoe' checkpoint"):
        initial_verifier(tiny_config(tmp_path, f"verifier.init={ttt_nano}"), nano_policy)
    with pytest.raises(agents.CheckpointError, match=r"verifier\.init"):
        initial_verifier(tiny_config(tmp_path, f"verifier.init={tmp_path / 'missing'}"), nano_policy)


def test_verifier_init_from_a_longer_imitation_run(tmp_path, nano_policy, capsys):
    from selfplay.core.transcript_stage import transcripts_stage
    from selfplay.text.verifier.stage import initial_verifier

    config = tiny_config(tmp_path, "verifier.init=imitation:25")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    transcripts_stage(config, run_dir)
    v = initial_verifier(config, nano_policy, run_dir, progress=False)
    meta = agents.read_meta(run_dir / "verifier_base/checkpoints/imitation")
    summary = json.loads((run_dir / "verifier_base/imitation.json").read_text())
    assert summary["steps_run"] == 25 and v.meta["init"]["step"] == meta["step"]
    initial_verifier(config, nano_policy, run_dir, progress=False)
    assert "imitation: reusing" in capsys.readouterr().out  # trained once
    with pytest.raises(ConfigError, match=r"verifier\.init"):
        tiny_config(tmp_path, "verifier.init=imitation:lots")


def test_no_verifier_refresh_once_the_minutes_are_spent(monkeypatch, tmp_path):
    """A refresh takes minutes; one begun after `rl.max_minutes` would delay the end for a reward that no
    step reads (the SmolLM2 run spent 1.5 minutes so)."""
    from types import SimpleNamespace

    refreshed = []
    monkeypatch.setattr(text_rl, "refresh", lambda config, run_dir, policy, old, step: refreshed.append(step))
    monkeypatch.setattr(text_rl, "point_verifier", lambda run_dir, verifier: None)
    monkeypatch.setattr(agents, "read_meta", lambda path: {})
    stage = object.__new__(text_rl.GroupRL)  # the hook alone: no actors, no model
    stage.config, stage.run_dir, stage.verifier = None, tmp_path, tmp_path / "verifier"
    stage.cfg = SimpleNamespace(verifier_refresh_every=2, max_minutes=1.0, steps=10, eval_every=100)
    learner = SimpleNamespace(step=2, elapsed=59.0, policy=None, writer=SimpleNamespace(add_scalar=print))
    stage.stepped(learner)
    learner.step, learner.elapsed = 4, 60.5
    stage.stepped(learner)
    stage.cfg.max_minutes = None
    stage.stepped(learner)
    assert refreshed == [2, 4]  # at step 2 in time, at 4 not (spent), at 4 with no budget at all
