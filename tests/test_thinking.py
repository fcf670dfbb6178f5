"""The thinking format: work shown by the experts, scoring on the answer alone, generation made to answer
when the budget runs out, and a run in the format through the main command and
`selfplay.text.think_budget`."""

import json
from pathlib import Path

import numpy as np
import pytest

import agents
import envs
import selfplay.text.episodes as text
from envs.tasks.arithmetic import _work
from envs.thinking import ANSWER, THINK, render, split
from selfplay.config import ConfigError, load_config
from selfplay.run import main
from selfplay.text.think_budget import main as think_budget

ROOT = Path(__file__).resolve().parents[1]


def _units(steps: str) -> list[str]:
    return [s[1] for s in steps.split()]


@pytest.mark.parametrize("seed", range(200))
def test_arithmetic_work_leads_to_the_answer(seed):
    rng = np.random.default_rng(seed)
    a, b = (int(rng.integers(0, 10 ** int(rng.integers(1, 5)))) for _ in range(2))
    plus = _work(a, "+", b)
    assert int(plus.split()[-1][0] + "".join(_units(plus))[::-1]) == a + b  # the last carry leads
    minus = _work(a, "-", b)
    assert int("".join(_units(minus))[::-1]) == abs(a - b)
    parts = _work(a, "*", b).split(", ")
    rows = [parts[0], *parts[1::2]]
    for row, y in zip(rows, reversed(str(b)), strict=True):  # each row: its digit times a
        steps = row.split()
        assert int(steps[-1][0] + "".join(_units(row))[::-1]) == a * int(y)


def test_the_format_scores_the_answer_alone():
    env = envs.make("arithmetic", digits=2, ops="+", thinking=True)
    task = env.sample(np.random.default_rng(0))  # 67+34=
    assert isinstance(env, envs.Thinking) and env.prompt_for(task) == "67+34="
    assert env.expert(task) == "think: 11 10 answer: 101" == render("11 10", "101")
    assert split(env.expert(task)) == ("11 10", "101")
    assert env.score(task, "think: nonsense 99+1 answer: 101") == 1.0  # the work is not scored
    assert env.score(task, "think: 11 10 answer: 100") == 0.0
    assert env.score(task, "think: answer: 101\nmore") == 1.0  # read up to the stop string
    no_answer = env.score_details(task, "think: 11 10")  # a scratchpad with no answer scores 0
    assert no_answer.value == 0.0 and "no answer" in no_answer.details["error"]
    assert env.score(task, "101") == 0.0  # the answer-only format is not this one
    assert env.score(task, "think: answer: answer: 101") == 1.0  # the last answer: counts
    assert env.score(task, None) == 0.0
    # the same tasks as without thinking: held-out sets do not move
    plain = envs.make("arithmetic", digits=2, ops="+")
    assert plain.sample(np.random.default_rng(0)) == task
    assert envs.make("arithmetic", **env.options).options == env.options


@pytest.mark.parametrize(
    "name, options",
    [("arithmetic", {"digits": 3, "ops": "+-*"}), ("arithmetic", {"digits": 3, "ops": "*", "min_digits": 3}),
     ("countdown", {})],
)  # fmt: skip
def test_thinking_envs_pass_the_checker(name, options):
    env = envs.make(name, thinking=True, **options)
    envs.check_reward_env(env)
    task = env.sample(np.random.default_rng(1))
    assert env.score(task, env.expert(task)) == 1.0 and len(env.expert(task)) <= env.max_completion_chars


def test_hurried_teacher_cuts_its_work_on_half_the_tasks_and_answers_rightly():
    env = envs.make("arithmetic", digits=3, ops="*", min_digits=3, thinking=True)
    hurried = env.teacher("hurried")
    tasks = [env.sample(np.random.default_rng(i)) for i in range(400)]
    cut = [len(split(hurried(t))[0]) < len(env.work(t)) for t in tasks]
    assert 0.35 < np.mean(cut) < 0.6
    assert all(env.score(t, hurried(t)) == 1.0 for t in tasks)
    assert all(hurried(t) == hurried(t) for t in tasks[:20])  # the same cut every time


def test_thinking_is_refused_where_it_cannot_be():
    with pytest.raises(ValueError, match="single-turn"):
        envs.make("guess_number", thinking=True)
    with pytest.raises(ValueError, match="shows no work"):
        envs.make("sort", thinking=True)
    with pytest.raises(TypeError, match="'thinking' must be true or false"):
        envs.make("arithmetic", thinking="yes")
    with pytest.raises(TypeError, match="unknown option"):
        envs.make("tictactoe", thinking=True)
    with pytest.raises(ValueError, match="budget must be an integer >= 0"):
        envs.make("arithmetic", thinking=True).with_budget(-1)
    with pytest.raises(ValueError, match="min_digits"):
        envs.make("arithmetic", digits=2, min_digits=3)


class _Rambler:
    """A policy that never answers on its own: `x` for every token of work, then `42`."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, *, max_new_tokens, stop=(), seed=None, **knobs):
        self.calls.append((list(prompts), max_new_tokens, tuple(stop)))
        if ANSWER in stop:  # the work
            return ["x" * max_new_tokens for _ in prompts]
        return ["42" for _ in prompts]


@pytest.mark.parametrize("budget", [0, 5])
def test_generation_stops_at_the_budget_and_is_made_to_answer(budget):
    env = envs.make("arithmetic", digits=2, ops="+", thinking=True).with_budget(budget)
    policy = _Rambler()
    out = text.ThinkingSampler(policy, env).generate(["6+7="], max_new_tokens=100, stop=env.stop)
    if budget:
        (work_prompts, work_cap, work_stop), (answer_prompts, answer_cap, _) = policy.calls
        assert work_prompts == ["6+7=" + THINK] and work_cap == budget and ANSWER in work_stop
    else:  # answer at once: no work is generated
        ((answer_prompts, answer_cap, _),) = policy.calls
    assert answer_prompts == ["6+7=" + THINK + "x" * budget + " " + ANSWER]
    assert answer_cap == env.answer_tokens
    assert out == [answer_prompts[0][len("6+7=") :] + "42"]
    assert split(out[0]) == ("x" * budget, "42")


def test_a_real_policy_answers_within_the_budget():
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=96)
    policy = agents.new_policy(cfg, device="cpu", seed=0, meta={"game": "arithmetic"})
    env = envs.make("arithmetic", digits=2, ops="+", thinking=True).with_budget(6)
    tasks = [env.sample(np.random.default_rng(i)) for i in range(16)]
    episodes = text.play(policy, env, tasks, temperature=1.0, max_new_tokens=env.completion_tokens(), seed=0)
    for ((_, completion),) in episodes:
        assert completion.startswith(THINK)
        head, sep, _ = completion.partition(ANSWER)
        assert sep and len(head) - len(THINK) <= 6 + 1  # the work (and the space before answer:)
    scores = text.episode_scores(env, tasks, episodes)
    assert ((scores == 0) | (scores == 1)).all()


def test_config_takes_the_budget_and_refuses_it_without_thinking(tmp_path):
    base = ROOT / "configs/text_thinking.yaml"
    config = load_config(base, [f"run_dir={tmp_path}", "rl.think_budget=8"])
    env = config.reward_env()
    assert isinstance(env, envs.Thinking) and env.budget == 8
    assert text.max_new_tokens(config, env) == env.completion_tokens()
    with pytest.raises(ConfigError, match=r"rl\.think_budget: the thinking format is off"):
        load_config(base, ["env_options={digits: 3, ops: '*', min_digits: 3}", "rl.think_budget=8"])
    with pytest.raises(ConfigError, match="block_size"):
        load_config(base, ["model.block_size=64"])


def test_a_thinking_run_end_to_end_and_its_budget_table(tmp_path):
    run = tmp_path / "run"
    overrides = [
        f"run_dir={run}",
        "env_options={digits: 2, ops: '+', thinking: true}",
        "transcripts.games=300",
        "imitation.max_steps=30",
        "imitation.eval_every=15",
        "imitation.eval_positions=20",
        "rl.steps=2",
        "rl.actors=0",
        "rl.prompts_per_step=8",
        "rl.group_size=4",
        "rl.batch_size=16",
        "rl.min_replay=8",
        "rl.verifier_weight=0.5",  # the verifier's scores tell a group's answers apart: RL steps
        "rl.eval_every=1",
        "rl.eval_tasks=20",
        "rl.checkpoint_every=1",
        "verifier.tasks=20",
        "verifier.samples=2",
        "verifier.steps=4",
        "verifier.batch_size=8",
        "verifier.eval_tasks=10",
        "verifier.best_of=2",
    ]
    assert main([str(ROOT / "configs/text_thinking.yaml"), *overrides, "--no-progress"]) == 0
    record = json.loads((run / "transcripts.jsonl").read_text().splitlines()[0])
    assert record["turns"][0]["completion"].startswith(THINK) and record["options"]["thinking"] is True
    assert json.loads((run / "rl.json").read_text())["steps"] == 2
    code = think_budget(
        [str(run), "--budgets", "0,4,12", "--best-of", "1,2", "--tasks", "10", "--no-progress"]
    )
    assert code == 0
    result = json.loads((run / "think_budget" / "think_budget.json").read_text())
    assert [r["budget"] for r in result["budget"]] == [0, 4, 12] and result["tasks"] == 10
    assert [r["n"] for r in result["best_of"]] == [1, 2] and result["verifier"]  # the run's own
    assert result["budget"][0]["tokens"] < result["budget"][2]["tokens"]  # a budget of 0 writes no work
    assert "| budget | accuracy |" in (run / "think_budget" / "think_budget.md").read_text()
    assert (run / "think_budget" / "think_budget.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit, match="thinking format is off"):
        other = tmp_path / "plain"
        other.mkdir()
        (other / "config.yaml").write_text((ROOT / "configs/arithmetic.yaml").read_text())
        think_budget([str(other), "--no-progress"])


def test_majority_counts_answers_not_work():
    env = envs.make("arithmetic", digits=2, ops="+", thinking=True)
    votes = ["think: 1 answer: 7", "think: 2 answer: 8", "think: 3 answer: 8", "think: 4 answer: 7 "]
    assert text.majority(env, votes) == "think: 1 answer: 7"  # 7 and 8 tie: the first seen wins
    assert text.majority(env, [*votes, "think: answer: 8"]) == "think: 2 answer: 8"
    assert text.majority(envs.make("arithmetic", digits=2), ["5", "6 ", "6"]) == "6 "


def test_the_gymnasium_face_takes_the_thinking_format():
    env = envs.make_gym("arithmetic", digits=2, ops="+", thinking=True)
    obs, _ = env.reset(seed=0)
    assert obs == "67+34="
    _, reward, terminated, _, _ = env.step("think: 11 10 answer: 101")
    assert reward == 1.0 and terminated
    env.reset(seed=0)
    assert env.step("101")[1] == 0.0  # the answer-only format is not this one
