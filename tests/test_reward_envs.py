"""Reward environments: the contract, the built-ins, the Gymnasium face and the text transcripts."""

import json
import math
import pickle
import warnings
from typing import ClassVar

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import registry
from envs.reward import RewardEnv, run_episode, sample_tasks
from envs.tasks.countdown import evaluate, solve
from selfplay.core.transcripts import (
    TEXT_FORMAT,
    TextTranscriptError,
    expert_transcripts,
    load_text_transcripts,
)

REWARD_ENVS = envs.names(kind="reward")

# Several difficulties of each built-in; the expert must solve every task of every one.
DIFFICULTIES = [
    ("arithmetic", {"digits": 1, "ops": "+"}),
    ("arithmetic", {"digits": 3}),
    ("arithmetic", {"digits": 9, "ops": "+-*"}),
    ("countdown", {"numbers": 2}),
    ("countdown", {}),
    ("countdown", {"numbers": 6, "max_number": 100, "max_target": 1000}),
    ("sort", {"length": 1}),
    ("sort", {}),
    ("sort", {"length": 20, "max_value": 9999}),
    ("guess_number", {"low": 1, "high": 2, "max_turns": 2}),
    ("guess_number", {}),
    ("guess_number", {"low": 0, "high": 1000, "max_turns": 10}),
]

BAD_INPUT = [
    None,
    b"12",
    123,
    12.0,
    ["12"],
    {"a": 1},
    "",
    "   \t ",
    "\n12",  # nothing before the stop string
    "1" * 1_000_000,
    "\x00\udcff\u202e\U0001f4a5",
    "\u0661\u0662",  # Arabic-Indic digits: not ASCII
    "Ω" * 10,
]


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made in a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))


# --- the registry ---------------------------------------------------------------------------------


def test_names_keep_games_and_list_reward_envs_apart():
    assert set(envs.names()) >= {"tictactoe", "connect_four", "othello"}
    assert not set(envs.names()) & set(REWARD_ENVS)
    assert REWARD_ENVS == ["arithmetic", "countdown", "guess_number", "sort"]
    assert envs.names(kind=None) == sorted(envs.names() + REWARD_ENVS)
    with pytest.raises(ValueError, match="kind must be one of"):
        envs.names(kind="rewards")


def test_make_returns_reward_envs_and_errors_name_the_problem():
    assert isinstance(envs.make("countdown", numbers=3), RewardEnv)
    with pytest.raises(envs.UnknownEnvError, match=r"unknown environment 'count'; known: .*countdown"):
        envs.make("count")
    with pytest.raises(TypeError, match=r"'digit'.*'arithmetic'.*known options: digits, ops"):
        envs.make("arithmetic", digit=3)
    with pytest.raises(ValueError, match=r"^arithmetic: option 'digits' must be an integer in \[1, 9\]"):
        envs.make("arithmetic", digits=0)
    with pytest.raises(ValueError, match=r"option 'digits'.*got '3'"):
        envs.make("arithmetic", digits="3")
    with pytest.raises(ValueError, match=r"option 'ops'"):
        envs.make("arithmetic", ops="+/")
    with pytest.raises(ValueError, match=r"option 'max_turns' must be an integer in \[7, 30\]"):
        envs.make("guess_number", max_turns=6)
    with pytest.raises(ValueError, match=r"option 'high'"):
        envs.make("guess_number", low=10, high=10)
    with pytest.raises(envs.UnknownEnvError, match="games have a PettingZoo face"):
        envs.make_gym("tictactoe")


# --- the contract, over the whole registry --------------------------------------------------------


@pytest.mark.parametrize("name", REWARD_ENVS)
def test_every_registered_reward_env_passes_the_checker(name):
    envs.check_reward_env(envs.make(name))


@pytest.mark.parametrize("name", REWARD_ENVS)
def test_every_registered_reward_env_passes_gymnasiums_check_env(name, capsys):
    env = envs.make_gym(name, render_mode="ansi")
    assert env.spec.id == f"selfplay/{name}-v0"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize(("name", "options"), DIFFICULTIES, ids=[f"{n}-{o}" for n, o in DIFFICULTIES])
def test_expert_scores_one_on_200_tasks(name, options):
    envs.check_reward_env(envs.make(name, **options), tasks=200)


@pytest.mark.parametrize("name", REWARD_ENVS)
def test_sampling_is_seeded(name):
    env = envs.make(name)
    assert sample_tasks(env, 30, seed=1) == sample_tasks(env, 30, seed=1)
    assert sample_tasks(env, 30, seed=1)[:10] == sample_tasks(env, 10, seed=1)  # task i depends on (seed, i)
    assert sample_tasks(env, 30, seed=1) != sample_tasks(env, 30, seed=2)
    again = envs.make(name)
    for rng_a, rng_b in ((np.random.default_rng(5), np.random.default_rng(5)),):
        assert env.sample(rng_a) == again.sample(rng_b)


def test_tasks_are_what_they_were():
    """Saved reference: the first task of each built-in under seed 0 (catches silent sampler changes)."""
    first = {name: sample_tasks(envs.make(name), 1, seed=0)[0] for name in REWARD_ENVS}
    assert {name: t.prompt for name, t in first.items()} == {
        "arithmetic": "56*3=",
        "countdown": "make 91 from 22 16 13 7:",
        "guess_number": "guess 1-100\n",
        "sort": "sort 85 63 51 26 30:",
    }
    assert first["guess_number"].data == {"secret": 86}
    assert first["sort"].id == "sort-1b882fe85306"


@pytest.mark.parametrize("name", REWARD_ENVS)
@pytest.mark.parametrize("bad", BAD_INPUT, ids=range(len(BAD_INPUT)))
def test_bad_input_scores_zero_and_never_raises(name, bad):
    env = envs.make(name)
    task = env.sample(np.random.default_rng(0))
    details = env.score_details(task, bad)
    assert details.value == 0.0 and "error" in details.details
    assert env.score_episode(task, [bad]).value == 0.0
    assert env.prompt_for(task, [bad]) is None  # a bad turn ends the episode


# --- the built-ins: wrong answers -----------------------------------------------------------------


def _task(name, **options):
    env = envs.make(name, **options)
    return env, env.sample(np.random.default_rng(3))


def test_arithmetic_wants_exactly_the_answer():
    env, task = _task("arithmetic", digits=4, ops="-")
    answer = task.data["a"] - task.data["b"]
    assert env.score(task, str(answer)) == 1.0
    assert env.score(task, f" {answer}\nmore text") == 1.0  # read up to the stop string, stripped
    for wrong in (answer + 1, f"0{answer}", f"+{answer}", f"{answer}.0", f"{answer} ", "4_2"):
        assert env.score(task, str(wrong)) == (1.0 if str(wrong).strip() == str(answer) else 0.0)


def test_sort_wants_the_sorted_list():
    env, task = _task("sort", length=6)
    values = sorted(task.data["values"])
    assert env.score(task, " ".join(map(str, values))) == 1.0
    assert env.score(task, "  ".join(map(str, values))) == 1.0  # any whitespace between numbers
    assert env.score(task, " ".join(map(str, reversed(values)))) == 0.0
    assert env.score(task, " ".join(map(str, values[:-1]))) == 0.0
    assert env.score(task, ",".join(map(str, values))) == 0.0


def test_countdown_parses_and_checks_without_eval():
    assert evaluate("(25-7)/3*6") == (18 * 2, [25, 7, 3, 6])
    assert evaluate("8/4/2")[0] == 1 and evaluate("8-4-2")[0] == 2 and evaluate("1+2*3")[0] == 7
    assert evaluate("7/2")[0] * 2 == 7  # exact fractions
    env = envs.make("countdown")
    task = envs.Task("countdown", "t", "make 24 from 4 6 1 7:", {"numbers": [4, 6, 1, 7], "target": 24})
    assert env.score(task, "4*6") == 1.0
    assert env.score(task, "(7-1)*4") == 1.0
    assert env.score(task, " (7 - 1) * 4 ") == 1.0
    assert env.score_details(task, "(7-1)*4*1").details["error"] == "uses [1] beyond the numbers given"
    assert env.score(task, "7/(7/24)") == 0.0  # 7 used twice
    assert env.score_details(task, "6*6-12").details["error"].startswith("uses [6, 12]")
    assert env.score(task, "4*7") == 0.0  # a wrong value
    for hostile in (
        "__import__('os').system('x')",
        "().__class__.__bases__",
        "lambda: 24",
        "4*6;exit()",
        "2**3*3",
        "-4*-6",
        "24e0",
        "1/0",
        "4/(1-1)",
        "(" * 40 + "24" + ")" * 40,
        "(4*6",
        "4*6)",
        "4 6",
        "0x18",
    ):
        details = env.score_details(task, hostile)
        assert details.value == 0.0, hostile


def test_countdown_solver_finds_fewest_operations():
    assert solve([4, 6, 1, 7], 24) == "6*4"
    assert solve([3, 5, 7], 22) == "5*3+7"
    assert solve([2, 3], 7) is None
    assert evaluate(solve([100, 75, 50, 25, 6, 3], 952))[0] == 952


def test_guess_number_episode():
    env = envs.make("guess_number", low=1, high=100, max_turns=7)
    task = envs.Task("guess_number", "t", "guess 1-100\n", {"secret": 70})
    assert env.prompt_for(task) == "guess 1-100\n"
    assert env.prompt_for(task, ["50", "80 "]) == "guess 1-100\n50 higher\n80 lower\n"
    assert env.prompt_for(task, ["50", "what"]) == "guess 1-100\n50 higher\nwhat ?\n"
    assert env.prompt_for(task, ["50", "70"]) is None  # solved: the episode is over
    assert env.prompt_for(task, ["1"] * 7) is None  # out of turns
    assert env.score_episode(task, ["50", "70"]).value == 1.0
    assert env.score_episode(task, ["50", "69"]).value == 0.0
    late = env.score_episode(task, ["70", "70"])
    assert late.value == 0.0 and "after the end" in late.details["error"]
    assert env.score_episode(task, ["1"] * 7 + ["70"]).value == 0.0  # past max_turns
    assert env.score_episode(task, []).value == 0.0
    assert env.score_episode(task, "70").value == 0.0  # a string is not a list of turns
    episode = run_episode(env, task)
    assert [t["completion"] for t in episode.turns] == ["50", "75", "62", "68", "71", "69", "70"]
    assert episode.score.value == 1.0


def test_guess_number_expert_always_wins_within_max_turns():
    env = envs.make("guess_number", low=1, high=100, max_turns=7)
    for secret in range(1, 101):
        task = envs.Task("guess_number", "t", "guess 1-100\n", {"secret": secret})
        episode = run_episode(env, task)
        assert episode.score.value == 1.0 and len(episode.turns) <= 7


# --- the Gymnasium face ---------------------------------------------------------------------------


def test_gym_single_turn_episode():
    env = envs.make_gym("arithmetic", digits=2, render_mode="ansi")
    obs, info = env.reset(seed=0)
    assert obs == info["task"]["prompt"] and obs.endswith("=")
    answer = str(info["task"]["data"]["answer"])
    obs, reward, terminated, truncated, info = env.step(answer + "\n")
    assert (obs, reward, terminated, truncated) == ("", 1.0, True, False)
    assert info["score"] == 1.0 and info["turn"] == 1
    assert env.render().endswith(f"={answer}\n")
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(answer)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(b"\xff")
    assert reward == 0.0 and terminated and "not text" in info["details"]["error"]


def test_gym_multi_turn_episode_by_the_expert():
    env = envs.make_gym("guess_number")
    inner = env.unwrapped.env
    obs, info = env.reset(seed=3)
    task = envs.Task("guess_number", info["task_id"], info["task"]["prompt"], info["task"]["data"])
    turns, terminated, reward = [], False, None
    while not terminated:
        turns.append(inner.expert(task, turns))
        obs, reward, terminated, truncated, info = env.step(turns[-1])
        assert not truncated and obs in env.observation_space
    assert reward == 1.0 and len(turns) <= inner.max_turns


def test_gym_truncates_when_the_prompt_outgrows_the_space():
    from envs.gym import RewardGymEnv

    env = envs.make("guess_number")
    env.max_prompt_chars = 25  # room for one guess and its reply, not two
    gym_env = RewardGymEnv(env)
    gym_env.reset(seed=0)
    obs, reward, terminated, truncated, info = gym_env.step("1")
    obs, reward, terminated, truncated, info = gym_env.step("2")
    assert (obs, reward, terminated, truncated) == ("", 0.0, False, True)
    assert "does not fit" in info["error"]


# --- defining a new environment -------------------------------------------------------------------


@envs.reward_env("double", expert=lambda task: str(2 * task.data["n"]), max_completion_chars=8)
def double(rng, *, high: int = 50):
    """Double a number."""
    n = int(rng.integers(high))
    return f"2*{n}=", {"n": n}


class Flaky(RewardEnv):
    """A scorer that misbehaves in every way a user's scorer can."""

    name = "flaky"

    def __init__(self, *, mode: str = "raise"):
        super().__init__(mode=mode)

    def sample(self, rng):
        return self.task("say ok:", {"n": int(rng.integers(10))})

    def _score(self, task, completion):
        if completion == "ok":
            return 1.0
        return {
            "raise": lambda: 1 / 0,
            "nan": lambda: math.nan,
            "big": lambda: 7,
            "negative": lambda: -3.0,
            "text": lambda: "0.5",
            "details": lambda: (0.25, {"why": "partial"}),
            "bad_tuple": lambda: (1.0, 2.0, 3.0),
        }[self.options["mode"]]()

    def expert(self, task, turns=()):
        return "ok"


@pytest.mark.parametrize(
    ("mode", "value", "detail"),
    [
        ("raise", 0.0, "ZeroDivisionError"),
        ("nan", 0.0, "NaN"),
        ("big", 1.0, None),
        ("negative", 0.0, None),
        ("text", 0.0, "must be a number"),
        ("details", 0.25, None),
        ("bad_tuple", 0.0, "ValueError"),
    ],
)
def test_score_guards_a_misbehaving_scorer(mode, value, detail):
    env = Flaky(mode=mode)
    task = env.sample(np.random.default_rng(0))
    score = env.score_details(task, "not ok")
    assert score.value == value and 0.0 <= score.value <= 1.0
    if detail:
        assert detail in score.details["error"]
    envs.check_reward_env(env, tasks=3)


def test_decorated_function_env(isolated_registry):
    envs.register("double", double)
    assert "double" in envs.names(kind="reward") and "double" not in envs.names()
    env = envs.make("double", high=9)
    assert env.options == {"high": 9} and envs.make("double").options == {"high": 50}
    envs.check_reward_env(env)
    task = env.sample(np.random.default_rng(0))
    assert env.score(task, str(2 * task.data["n"])) == 1.0 and env.score(task, "-1") == 0.0
    assert env.score(task, "123456789") == 0.0  # over max_completion_chars
    assert pickle.loads(pickle.dumps(env)).sample(np.random.default_rng(0)) == task  # actors pickle envs
    with pytest.raises(TypeError, match=r"'low'.*'double'.*known options: high"):
        envs.make("double", low=1)
    with pytest.raises(TypeError, match=r"double: option 'high' must be int, got '9'"):
        envs.make("double", high="9")
    check_env(envs.make_gym("double").unwrapped)
    with pytest.raises(TypeError, match="keyword arguments with defaults"):
        envs.reward_env("bad", expert=str)(lambda rng, n: ("p", {}))


def test_checker_catches_broken_envs():
    class WrongExpert(Flaky):
        name = "wrong_expert"

        def expert(self, task, turns=()):
            return "not ok"

    class Unseeded(Flaky):
        name = "unseeded"

        def sample(self, rng):
            return self.task("say ok:", {"n": int(np.random.default_rng().integers(1 << 30))})

    class LongPrompt(Flaky):
        name = "long_prompt"

        def sample(self, rng):
            return self.task("x" * 200, {})

    class BadReply(envs.make("guess_number").__class__):
        def reply(self, task, turns):
            int(turns[-1])  # raises on a turn that is no number
            return super().reply(task, turns)

    class BadTeacher(Flaky):
        name = "bad_teacher"
        teachers: ClassVar[dict[str, str]] = {"lazy": "answers nothing"}

        def _teach(self, name, task, turns):
            return ""

    cases = [
        (WrongExpert(), "the expert must score 1.0"),
        (BadTeacher(), "teacher 'lazy' must write non-empty text with no stop"),
        (Unseeded(), "same seed gave different tasks"),
        (LongPrompt(), "max_prompt_chars"),
        (BadReply(), "reply to the turn 'zzz' must not raise"),
    ]
    for env, rule in cases:
        with pytest.raises(envs.RewardEnvCheckError, match=rule):
            envs.check_reward_env(env, tasks=3)


def test_a_task_of_another_env_is_a_caller_error():
    task = envs.make("sort").sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="belongs to environment 'sort'"):
        envs.make("arithmetic").score(task, "1")
    with pytest.raises(TypeError, match="expected a Task"):
        envs.make("arithmetic").score({"prompt": "1+1="}, "2")


# --- text transcripts -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", REWARD_ENVS)
def test_expert_transcripts_round_trip(name, tmp_path):
    records = expert_transcripts(envs.make(name), 20, seed=0)
    assert all(r["format"] == TEXT_FORMAT and r["score"] == 1.0 for r in records)
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert load_text_transcripts(path, env=name) == records
    assert records == expert_transcripts(envs.make(name), 20, seed=0)


def test_no_carry_teacher_is_wrong_the_same_way_on_about_half_of_the_tasks(tmp_path):
    env = envs.make("arithmetic", digits=2, ops="+")
    teach = env.teacher("no_carry")
    by_prompt = {}
    for task in sample_tasks(env, 2000, seed=0):
        by_prompt[task.prompt] = (teach(task), env.expert(task), env.score(task, teach(task)))
    assert by_prompt.get("47+38=", ("75",))[0] == "75" and by_prompt.get("8+2=", ("0",))[0] == "0"
    task = env.task("47+38=", {"a": 47, "op": "+", "b": 38, "answer": 85})
    assert (teach(task), env.teacher()(task), env.teacher("expert")(task)) == ("75", "85", "85")
    assert teach(env.task("90+87=", {"a": 90, "op": "+", "b": 87, "answer": 177})) == "77"
    right = np.mean([s for _, _, s in by_prompt.values()])
    assert 0.4 < right < 0.6  # right exactly where no column carries
    assert all((t == e) == (s == 1.0) for t, e, s in by_prompt.values())
    with pytest.raises(ValueError, match="needs ops '\\+'"):
        envs.make("arithmetic", ops="+*").teacher("no_carry")
    with pytest.raises(ValueError, match="unknown teacher 'x'; known: expert, no_carry"):
        env.teacher("x")
    with pytest.raises(ValueError, match=r"known: expert$"):
        envs.make("sort").teacher("no_carry")
    # its transcripts keep the wrong answers, scored, and load back
    records = expert_transcripts(env, 50, seed=0, teacher="no_carry")
    assert {r["teacher"] for r in records} == {"no_carry"} and {r["score"] for r in records} == {0.0, 1.0}
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert load_text_transcripts(path, env="arithmetic") == records
    path.write_text(json.dumps({**records[0], "teacher": 3}) + "\n")
    with pytest.raises(TextTranscriptError, match=":1: teacher must be a string"):
        load_text_transcripts(path)


def test_bad_transcript_lines_name_file_and_line(tmp_path):
    good = expert_transcripts(envs.make("guess_number"), 2, seed=0)
    path = tmp_path / "t.jsonl"

    def load_with(line: str, **kwargs):
        path.write_text(json.dumps(good[0]) + "\n\n" + line + "\n")
        with pytest.raises(TextTranscriptError) as err:
            load_text_transcripts(path, **kwargs)
        assert str(err.value).startswith(f"{path}:3: ")
        return str(err.value)

    def edited(**changes):
        return json.dumps({**good[1], **changes})

    assert "not valid JSON" in load_with("{nope")
    assert "keys" in load_with(json.dumps({"format": TEXT_FORMAT}))
    assert "format must be" in load_with(edited(format="selfplay.text/0"))
    assert "unknown environment 'nope'" in load_with(edited(env="nope"))
    assert "is a game, not a reward environment" in load_with(edited(env="tictactoe"))
    assert "option 'max_turns'" in load_with(edited(options={"max_turns": 2}))
    assert "does not match the episode's score" in load_with(edited(score=0.5))
    turns = [dict(t) for t in good[1]["turns"]]
    turns[1]["prompt"] = "guess 1-100\n50 lower\n"
    assert "turn 2: prompt does not match" in load_with(edited(turns=turns))
    extra = [*good[1]["turns"], {"prompt": "x", "completion": "1"}]
    assert "comes after the end" in load_with(edited(turns=extra))
    with pytest.raises(TextTranscriptError, match=rf"^{path}:1: .*'guess_number', expected 'sort'"):
        load_text_transcripts(path, env="sort")
    path.write_text("\n")
    with pytest.raises(TextTranscriptError, match="holds no transcripts"):
        load_text_transcripts(path)
    with pytest.raises(TextTranscriptError, match="no such transcript file"):
        load_text_transcripts(tmp_path / "missing.jsonl")


def test_transcripts_command_writes_a_teachers_episodes_and_refuses_bad_options(tmp_path, capsys):
    from selfplay.core.transcripts import main

    out = tmp_path / "no_carry.jsonl"
    argv = [
        "--game",
        "arithmetic",
        "--options",
        '{"digits": 2, "ops": "+"}',
        "--games",
        "30",
        "--out",
        str(out),
    ]
    assert main([*argv, "--expert", "no_carry"]) == 0
    assert "30 arithmetic episodes by no_carry" in capsys.readouterr().out
    records = load_text_transcripts(out, env="arithmetic")
    assert records == expert_transcripts(envs.make("arithmetic", digits=2, ops="+"), 30, teacher="no_carry")
    bad = [
        (["--options", "[1]"], "must be a JSON object"),
        (["--options", '{"digit": 2}'], "unknown option(s) 'digit'"),
        (["--options", "{}", "--expert", "no_carry"], "needs ops '+'"),
    ]
    for extra, needle in bad:
        args = [
            "--game",
            "arithmetic",
            "--expert",
            "expert",
            "--games",
            "3",
            "--out",
            str(tmp_path / "x.jsonl"),
        ]
        assert main([*args, *extra]) == 2
        assert needle in capsys.readouterr().err
        assert not (tmp_path / "x.jsonl").exists()
    game = ["--game", "tictactoe", "--expert", "minimax", "--games", "2", "--options", '{"a": 1}']
    assert main([*game, "--out", str(tmp_path / "g.jsonl")]) == 2
    assert "takes no options" in capsys.readouterr().err
