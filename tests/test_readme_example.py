"""The reward-environment guide's "define a new one" example (docs/new_env_example.py), run as written."""

import re
import runpy
from pathlib import Path

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import registry

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "new_env_example.py"
GUIDE = ROOT / "docs" / "reward-envs.md"  # the guide that shows the example


@pytest.fixture
def example(monkeypatch, capsys):
    """Run the example with the registries restored afterwards; its globals and printed lines."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    try:
        namespace = runpy.run_path(str(EXAMPLE), run_name="new_env_example")
        yield namespace, capsys.readouterr().out.splitlines()
    finally:
        gymnasium.registry.pop("selfplay/reverse-v0", None)


def test_example_is_short():
    assert len(EXAMPLE.read_text().splitlines()) < 30


def test_example_runs_and_prints_what_its_comments_say(example):
    _, printed = example
    source = EXAMPLE.read_text()
    promised = [m.group(1) for m in re.finditer(r"^print\(.*\)  # (.*)$", source, re.MULTILINE)]
    assert printed == promised


def test_example_env_passes_both_checkers(example):
    namespace, _ = example
    assert "reverse" in envs.names(kind="reward")
    env = namespace["env"]
    envs.check_reward_env(env, tasks=100)
    envs.check_reward_env(envs.make("reverse", length=20), tasks=100)
    check_env(envs.make_gym("reverse").unwrapped)
    with pytest.raises(ValueError, match="option 'length'"):
        envs.make("reverse", length=0)


def test_readme_shows_the_example_verbatim():
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert EXAMPLE.read_text() in blocks, f"{GUIDE.name} does not show {EXAMPLE.name} verbatim"
