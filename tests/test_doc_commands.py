"""Every command the README and the guides show in a code block, run: as written where that takes seconds,
otherwise with shortening arguments appended (a later `key=value` override or option wins over the one
written), in a directory of its own holding `configs/` and `bench/`, in the order a reader meets them
(later commands read the run directories earlier ones made). A command no test can run says why."""

import io
import os
import re
import runpy
import shlex
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"^(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?(?:python|make|ray)\b")

# Shortening arguments (`ws`: the directory the commands run in).
TEXT = (
    "transcripts.games=200 model.size=nano imitation.max_steps=20 imitation.eval_every=10 "
    "imitation.eval_positions=20 rl.steps=2 rl.actors=0 rl.prompts_per_step=8 rl.group_size=4 "
    "rl.batch_size=16 rl.min_replay=8 rl.eval_every=2 rl.eval_tasks=20 rl.checkpoint_every=2 "
    "verifier.tasks=20 verifier.samples=2 verifier.steps=4 verifier.batch_size=8 verifier.eval_tasks=10 "
    "verifier.best_of=2 corrections.rounds=0"
)
# GRPO on the environment's score after 20 imitation steps: most groups all wrong, so few teach; 3 s end it
SCORED = TEXT + " rl.max_minutes=0.05"
GAME = (
    "model.size=nano imitation.max_steps=4 imitation.eval_every=4 imitation.eval_positions=20 "
    "imitation.max_minutes=null corrections.rounds=0 selfplay.steps=2 selfplay.max_minutes=null "
    "selfplay.actors=0 selfplay.games_per_actor=2 selfplay.simulations=2 selfplay.min_replay=8 "
    "selfplay.batch_size=8 selfplay.checkpoint_every=2 evaluation.games=2 evaluation.simulations=[0] "
    "evaluation.baselines=[random] evaluation.final_games=2"
)
C4 = "transcripts.path={ws}/c4.jsonl " + GAME
TTT = "transcripts.games=40 " + GAME
HF_TEXT = SCORED.replace("model.size=nano ", "") + " model.path={ws}/runs/tiny-llama"
HF = "model.path={ws}/runs/tiny-llama transcripts.games=40 " + GAME.replace("model.size=nano ", "")

# Each command as a page shows it (comments and line continuations aside), and what the test appends.
RUN = {
    # games: transcripts, the main job, the arena, play
    ".venv/bin/python -m selfplay.transcripts --game connect_four --expert alphabeta:depth=4 --games 2000 "
    "--out c4.jsonl": "--games 6 --workers 1",
    '.venv/bin/python -m selfplay.transcripts --game arithmetic --options \'{"digits": 2, "ops": "+"}\' '
    "--expert no_carry --games 20000 --out no_carry.jsonl": "--games 50 --workers 1",
    ".venv/bin/python -m selfplay.run configs/game.yaml [key=value ...]": C4,
    ".venv/bin/python -m selfplay.run --resume runs/connect_four": "selfplay.steps=4",
    ".venv/bin/python -m selfplay.run configs/game.yaml selfplay.actors=8": C4
    + " selfplay.actors=1 run_dir=runs/c4_actors",
    "make run": "ARGS=" + C4 + " run_dir={ws}/runs/make_run",
    ".venv/bin/python -m selfplay.arena --game connect_four runs/connect_four random alphabeta:2 "
    "--games 20": ("--games 2"),
    ".venv/bin/python -m selfplay.arena --game connect_four --gauntlet "
    "runs/connect_four/checkpoints/imitation@mcts:64 random alphabeta:4": "--games 2",
    ".venv/bin/python -m selfplay.imitate configs/tictactoe.yaml": TTT,
    ".venv/bin/python -m selfplay.arena --game tictactoe --budgets 0,16,64,256 "
    "runs/tictactoe/checkpoints/imitation --against random,minimax": "--games 2",
    ".venv/bin/python -m selfplay.play runs/tictactoe/checkpoints/imitation": "",
    ".venv/bin/python -m selfplay.play runs/connect_four --human-second": "",
    ".venv/bin/python -m selfplay.play runs/connect_four/checkpoints/imitation@mcts:64": "",
    ".venv/bin/python -m selfplay.play alphabeta:4 --game connect_four": "",
    # reward environments, the verifier, thinking, the workbench
    # the workbench's commands below compare its final checkpoint with its imitation, so RL must step: a
    # verifier's scores set a group's answers apart where the environment's score may leave all alike
    "python -m selfplay.run configs/arithmetic.yaml": TEXT + " rl.reward=verifier",
    "python -m selfplay.run configs/text_beyond.yaml": SCORED,
    "python -m selfplay.run configs/text_beyond.yaml rl.reward=verifier rl.kl_weight=0.05 "
    "run_dir=runs/text_beyond_verifier": TEXT,
    "python bench/teacher_support.py runs/text_beyond/checkpoints/imitation --teacher seldom_carries": (
        "--tasks 8"
    ),
    "python -m selfplay.run configs/text_thinking.yaml": TEXT
    + " 'env_options={digits: 2, ops: \"+\", thinking: true}' rl.verifier_weight=0.5",
    "python -m selfplay.think_budget runs/text_thinking --budgets 0,8,16,24,32,40,48,56": (
        "--budgets 0,4 --best-of 1,2 --tasks 4"
    ),
    "python -m selfplay.label compare --run runs/arithmetic --checkpoint imitation --checkpoint final "
    "--n 3": ("--tasks 4 --port 0"),
    "python -m selfplay.label correct --run runs/arithmetic --terminal --labeller ann": "--tasks 4",
    "python -m selfplay.label arena --checkpoint runs/a --checkpoint runs/b": ("--port 0"),
    "python -m selfplay.label arena --run runs/arithmetic --checkpoint imitation --checkpoint final "
    "--judge env:noise=0.1 --votes 300 --temperature 0": "--votes 4 --tasks 4",
    "python -m selfplay.ratings runs/arithmetic/labels/votes.jsonl": "",
    "python -m selfplay.label compare --run runs/arithmetic --n 3 --judge env:noise=0.1 --tasks 1000": (
        "--tasks 4"
    ),
    "python -m selfplay.label audit --run runs/arithmetic --of compare --sample 1000 "
    "--judge env": "--sample 4",
    # sweeps
    # three points a sweep, each a process: a width beside another, and a data size beside another
    "python -m selfplay.sweep configs/sweep_arithmetic.yaml": "workers=1 bootstrap=10 holdout=0 "
    "'grid={width: [{model.n_embd: 8}, {model.n_embd: 16}], transcripts.games: [40]}' "
    "'points=[{model.n_embd: 8, transcripts.games: 80}]'",
    "python -m selfplay.sweep configs/sweep_connect_four.yaml": "workers=1 bootstrap=10 holdout=0 "
    "'grid={width: [{model.n_embd: 8}, {model.n_embd: 16}], transcripts.games: [20]}' "
    "'points=[{model.n_embd: 8, transcripts.games: 40}]' arena.games=2",
    "python -m selfplay.sweep configs/sweep_connect_four_selfplay.yaml": "'grid={selfplay.simulations: [2]}' "
    "'overrides=[transcripts.games=20, imitation.max_steps=1, imitation.eval_every=1, corrections.rounds=0, "
    "selfplay.start=scratch, selfplay.max_minutes=null, selfplay.steps=2, selfplay.checkpoint_every=1, "
    "selfplay.actors=0, selfplay.games_per_actor=2, selfplay.min_replay=8, selfplay.batch_size=8, "
    "evaluation.games=0, evaluation.final_games=0]' "
    "'arena={checkpoints: doubling, simulations: [0, 2], baselines: [random], games: 2, workers: 1}'",
    # Hugging Face models
    ".venv/bin/python -m selfplay.tiny_model --arch llama --out runs/tiny-llama": "",
    ".venv/bin/python -m selfplay.run configs/tictactoe_hf.yaml": HF,
    ".venv/bin/python -m selfplay.run configs/arithmetic_hf.yaml": HF_TEXT,
    ".venv/bin/python -m selfplay.run configs/arithmetic_hf.yaml model.path=models/SmolLM2-135M "
    "run_dir=runs/arith_smollm imitation.lr=0.0001 rl.lr=0.0002": HF_TEXT,
    ".venv/bin/python -m selfplay.run configs/tictactoe_hf.yaml model.path=models/Qwen2.5-0.5B "
    "run_dir=runs/ttt_qwen 'model.lora={r: 16, alpha: 32}' imitation.lr=0.0002": HF,
}
NOT_RUN = {
    "make test": "it runs this suite: CI runs it (.ci/run) at every stop",
    'make setup TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"': (
        "installs CUDA torch from download.pytorch.org, which these machines cannot reach; `make setup` "
        "itself runs before every `make test`"
    ),
    "ray start --head --num-cpus=16 --num-gpus=1": (
        "starts a Ray cluster's head node; tests/test_ray.py runs the Ray backend on a local Ray"
    ),
    "RAY_AUTH_MODE=disabled .venv/bin/python -m selfplay.run configs/game.yaml runtime.backend=ray "
    "runtime.ray_address=auto selfplay.actors=32 runtime.inference_server=on runtime.server_gpus=0.5 "
    "runtime.learner_gpus=0.5": (
        "joins that cluster and reserves GPUs; tests/test_ray.py runs each part on a local Ray: the "
        "inference server, a learner holding GPUs as a Ray task, actors replaced"
    ),
}
STDIN = {"selfplay.play": "quit\n"}  # a person's moves: quit at the first prompt
SETUP = {  # what a command needs that no shown command makes: two runs to rate against each other
    "python -m selfplay.label arena --checkpoint runs/a --checkpoint runs/b": (
        lambda ws: [_copy(ws / "runs/arithmetic", ws / "runs" / n) for n in "ab"]
    ),
}


def _copy(run: Path, to: Path) -> None:
    if not to.exists():
        shutil.copytree(run, to)


def shown() -> list[str]:
    """Each command in a code block of the README and the guides (not results.md, whose commands take
    hours and say so), continuations joined and comments dropped."""
    out = []
    for page in PAGES:
        if page.name == "results.md":
            continue
        text = page.read_text()
        for lang, block in re.findall(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
            if lang not in ("", "bash", "sh"):
                continue
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if COMMAND.match(line):
                    out.append(" ".join(line.split()))
    return list(dict.fromkeys(out))


def test_every_shown_command_is_run_here_or_says_why():
    assert set(shown()) == set(RUN) | set(NOT_RUN)
    assert not set(RUN) & set(NOT_RUN)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The directory the commands run in, as a reader's checkout: configs/ and bench/ beside runs/."""
    ws = tmp_path_factory.mktemp("reader")
    for name in ("configs", "bench"):
        (ws / name).symlink_to(ROOT / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ws)
        mp.setenv("RAY_AUTH_MODE", "disabled")
        yield ws


def _run(command: str, extra: str, ws: Path, capsys) -> None:
    extra = extra.replace("{ws}", str(ws))
    if "make" in command.split():
        env = dict(os.environ, **dict(w.split("=", 1) for w in command.split() if "=" in w))
        venv = Path(sys.executable).parent.parent
        key, _, value = extra.partition("=")
        argv = ["make", "-s", "-C", str(ROOT), "-o", f"{venv}/.installed", "run", f"VENV={venv}"]
        done = subprocess.run([*argv, f"{key}={value}"], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    words = shlex.split(re.sub(r"\[[^\]]*\]", "", command)) + shlex.split(extra)
    words = words[1:]  # the interpreter
    if "--port" in words:  # a web page: it serves until stopped
        proc = subprocess.Popen(
            [sys.executable, *words], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if "open http://" in line:
                    break
            assert any("open http://" in line for line in lines), "".join(lines)[-3000:]
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        return
    module = words[1] if words[0] == "-m" else None
    argv = words[2:] if module else words[1:]
    sys_argv, sys_stdin = sys.argv, sys.stdin
    sys.argv = [module or words[0], *argv]
    sys.stdin = io.StringIO(STDIN.get(module, ""))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a module run again as __main__
            if module:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(str(ws / words[0]), run_name="__main__")
    except SystemExit as e:
        assert e.code in (0, None), capsys.readouterr().err[-3000:]
    finally:
        sys.argv, sys.stdin = sys_argv, sys_stdin


@pytest.mark.parametrize("command", list(RUN))
def test_shown_command_runs(command, ws, capsys):
    if command in SETUP:
        SETUP[command](ws)
    _run(command, RUN[command], ws, capsys)
