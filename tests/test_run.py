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
