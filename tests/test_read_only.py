"""A read-only place to write is one line naming the directory, from every command that writes, before
any work: run, resume, imitate, arena, label and tiny_model, run in a mount namespace of their own where
the directory is a read-only bind mount (as root, `chmod` stops no write)."""

import json
import shutil
import subprocess
import sys

import pytest
from tiny_runs import TINY, TTT, copy

SCRIPT = r"""
import contextlib, io, json, sys
from selfplay import run, tiny_model
import selfplay.arena.cli as arena
import selfplay.games.imitate as imitate
from selfplay.label import cli
ro, ttt, tiny = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
commands = {
    "run": lambda: run.main([ttt, f"run_dir={ro}/new", *tiny, "--no-progress"]),
    "resume": lambda: run.main(["--resume", f"{ro}/run", "selfplay.steps=18", "--no-progress"]),
    "imitate": lambda: imitate.main([ttt, f"run_dir={ro}/new", *tiny, "--no-progress"]),
    "arena": lambda: arena.main(["--game", "tictactoe", f"{ro}/run/checkpoints/imitation", "random",
                                 "--games", "2", "--no-progress"]),
    "label": lambda: cli.main(["compare", "--prompts", f"{ro}/prompts.txt", "--checkpoint",
                               f"{ro}/run/checkpoints/imitation", "--out", f"{ro}/labels", "--terminal"]),
    "tiny_model": lambda: tiny_model.main(["--arch", "llama", "--out", f"{ro}/tiny"]),
}
out = {}
for name, command in commands.items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = command()
        except SystemExit as e:  # the label command exits with its message
            rc, _ = 1, print(e.code, file=sys.stderr)
        except Exception as e:
            rc, _ = "raised", print(f"Traceback: {e!r}", file=sys.stderr)
    out[name] = [rc, err.getvalue()]
print(json.dumps(out))
"""


def test_every_command_names_a_read_only_directory_before_any_work(game_run, tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare for a private read-only mount")
    ro = tmp_path / "ro"
    copy(game_run, ro / "run")
    (ro / "prompts.txt").write_text("1+1=\n")
    before = sorted(str(p.relative_to(ro)) for p in ro.rglob("*"))
    mount = f'mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} {ro} && exec "$0" "$@"'
    argv = [sys.executable, "-c", SCRIPT, str(ro), TTT, json.dumps(TINY)]
    done = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", mount, *argv], capture_output=True, text=True
    )
    if done.returncode != 0 and "unshare" in done.stderr and not done.stdout:
        pytest.skip(f"no private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.splitlines()[-1])
    for name, (rc, err) in results.items():
        assert rc in (1, 2), (name, rc, err)
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(lines) == 1 and "cannot be written: a read-only file system" in lines[0], (name, err)
        assert str(ro) in lines[0] and "Traceback" not in err, (name, err)
    assert sorted(str(p.relative_to(ro)) for p in ro.rglob("*")) == before  # nothing written
