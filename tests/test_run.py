"""The main command and its config, end to end on a tiny budget."""

import subprocess
import sys

import pytest
import yaml

from selfplay.config import ConfigError, load_config, reference_markdown
from selfplay.core.transcripts import load_transcripts
from selfplay.run import main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def files_of(run_dir):
    """Every file of a run directory and its contents (the lock file aside)."""
    return {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != ".lock"}


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_configs_are_valid():
    from selfplay.sweep import load_sweep

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if path.name.startswith("sweep_"):  # a sweep over a run config: every point's config checked
            assert load_sweep(path)[1]
            continue
        config = load_config(path)
        assert config.game in path.read_text()


def test_main_job_generates_and_then_reuses_transcripts(tmp_path, capsys):
    run_dir = tmp_path / "run"
    tiny = ["model.size=nano", "model.block_size=64", "imitation.max_steps=4", "imitation.eval_every=2"]
    tiny.append("selfplay.algorithm=none")
    argv = [str(ROOT / "configs/tictactoe.yaml"), f"run_dir={run_dir}", "transcripts.games=30", *tiny]
    argv.append("--no-progress")
    assert main(argv) == 0
    assert "generating 30 tictactoe games" in capsys.readouterr().out
    assert len(load_transcripts(run_dir / "transcripts.jsonl", game="tictactoe")) == 30
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["transcripts"]["games"] == 30 and saved["game"] == "tictactoe"
    assert (run_dir / "checkpoints/imitation/model.safetensors").exists()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "reusing 30 games" in out and "imitation: reusing" in out
    before = files_of(run_dir)
    assert main([*argv[:-1], "transcripts.games=31", "--no-progress"]) == 2  # would overwrite: refused
    err = capsys.readouterr().err
    assert "already holds transcripts" in err and "an imitation checkpoint" in err
    assert files_of(run_dir) == before  # nothing was written


def test_user_supplied_transcripts_are_validated(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/bad.jsonl").write_text('{"format": "selfplay.transcript/1"}\n')
    cfg = write(
        tmp_path, f"game: tictactoe\nrun_dir: {tmp_path / 'run'}\ntranscripts:\n  path: data/bad.jsonl\n"
    )
    assert main([str(cfg)]) == 2
    assert "bad.jsonl:1: " in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        (
            "game: tictactoe\ntranscripts:\n  gmes: 3\n",
            [],
            r"unknown key 'transcripts.gmes'; known keys here: path",
        ),
        ("gam: tictactoe\n", [], r"unknown key 'gam'"),
        ("game: go\n", [], r"unknown game 'go'; known: connect_four"),
        (
            "game: tictactoe\ntranscripts:\n  games: many\n",
            [],
            r"transcripts.games: Input should be a valid integer",
        ),
        (
            "game: tictactoe\ntranscripts:\n  games: 0\n",
            [],
            r"transcripts.games: .*greater than or equal to 1",
        ),
        ("game: tictactoe\n", ["transcripts.expert=alphabeta:3"], r"does not play 'tictactoe'"),
        ("game: tictactoe\n", ["transcripts.workers=-2"], r"transcripts.workers.*command-line override"),
        ("game: tictactoe\n", ["transcripts"], r"override .transcripts. must look like key=value"),
        ("- a\n- b\n", [], r"top level must be a mapping"),
        ("game: [unclosed\n", [], r"not valid YAML"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, overrides, message):
    cfg = write(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError, match=message) as err:
        load_config(cfg, overrides)
    assert str(err.value).startswith(f"{cfg}: ") or "override" in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_reference_lists_every_key():
    table = reference_markdown()
    for key in ["game", "run_dir", "transcripts.expert", "transcripts.games", "transcripts.opening_plies"]:
        assert f"| `{key}` |" in table


# Keys no shipped config sets, each with what earns it its place (issue 37: set by a shipped config, used by
# a measured result, named by an open issue, or removed); a key a config comes to set leaves this table.
UNSET_KEYS = {
    "transcripts.path": "measured: every scaling-sweep point and bench/corrections.py's rounds set it",
    "transcripts.take": "measured: the scaling sweeps' data sizes",
    "transcripts.corrections": "issue 42: corrected or exact answers joining a teacher's transcripts",
    "transcripts.workers": "standard: processes",
    "model.chat_template": "measured: SmolLM2 in its chat template (results.md)",
    "imitation.device": "standard: device",
    "corrections.expert": "measured: bench/corrections.py's rounds",
    "corrections.temperature": "measured: the text correction rounds (results.md)",
    "corrections.share": "measured: the text correction rounds, 0.5 against 0.2 (results.md)",
    "corrections.seed": "standard: seed",
    "selfplay.seed": "standard: seed",
    "selfplay.threads": "standard: threads",
    "selfplay.fast_simulations": "issue 37 and measured: playout-cap randomisation (results.md)",
    "selfplay.full_search_prob": "issue 37 and measured: playout-cap randomisation (results.md)",
    "selfplay.clip": "issue 39 decides pg's fate (pg's ratio clip)",
    "selfplay.entropy_weight": "issue 39 decides pg's fate",
    "selfplay.pool_size": "issue 39: self-play against a pool of past checkpoints",
    "selfplay.pool_by_rating": "issue 39: self-play against a pool of past checkpoints",
    "evaluation.workers": "standard: processes",
    "rl.seed": "standard: seed",
    "rl.device": "standard: device",
    "rl.actor_device": "standard: device",
    "rl.threads": "standard: threads",
    "rl.think_budget": "issue 37 and issue 39 (selfplay.think_budget is generated the same way)",
    "rl.clip": "issue 39: the clipped objective both pipelines share",
    "verifier.seed": "standard: seed",
    "judge.seed": "standard: seed",
    "runtime.backend": "measured: the Ray backend's tic-tac-toe figure (results.md)",
    "runtime.ray_address": "standard: joining a Ray cluster (docs/gpu-and-ray.md)",
    "runtime.server_batch": "standard: the inference server's batch on a GPU (docs/gpu-and-ray.md)",
    "runtime.server_wait_ms": "standard: the inference server's wait on a GPU (docs/gpu-and-ray.md)",
    "runtime.actor_cpus": "standard: Ray placement",
    "runtime.actor_gpus": "standard: Ray placement",
    "runtime.server_gpus": "standard: Ray placement",
    "runtime.learner_gpus": "standard: Ray placement",
    "runtime.max_restarts": "standard: how many times a dead actor is replaced (docs/main-job.md)",
}


def shipped_keys() -> set[str]:
    """Every dotted key a file of configs/ sets: run configs' keys (a mapping's own and each inside it),
    sweeps' `overrides` and the keys of their `grid` points."""

    def walk(data: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in data.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k != "env_options":
                out |= walk(v, f"{prefix}{k}.")
        return out

    keys: set[str] = set()
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if "grid" not in data:
            keys |= walk(data)
            continue
        keys |= {o.partition("=")[0] for o in data.get("overrides", [])}
        for axis, points in data["grid"].items():
            keys |= {k for p in points if isinstance(p, dict) for k in p} or {axis}
    return keys


def test_every_config_key_is_set_by_a_shipped_config_or_says_why():
    keys = reference_markdown().split("| removed key |")[0]
    every = [line.split("`")[1] for line in keys.splitlines() if line.startswith("| `")]
    shipped = shipped_keys()
    unset = {k for k in every if k not in shipped and not any(s.startswith(k + ".") for s in shipped)}
    assert unset == set(UNSET_KEYS)


def test_module_entry_point_runs(tmp_path):
    """`python -m selfplay.run` as a user types it (bad config: exits 2 with the message, no traceback)."""
    cfg = write(tmp_path, "game: tictactoe\nbogus: 1\n")
    proc = subprocess.run([sys.executable, "-m", "selfplay.run", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown key 'bogus'" in proc.stderr and "Traceback" not in proc.stderr


def test_readme_config_reference_is_current():
    """docs/config.md shows the reference `python -m selfplay.config` prints, between its markers."""
    guide = (ROOT / "docs" / "config.md").read_text()
    start = guide.index("<!-- generated by `python -m selfplay.config`")
    block = guide[guide.index("\n", start) + 1 : guide.index("<!-- end of generated reference -->")]
    assert block.strip() == reference_markdown().strip()
