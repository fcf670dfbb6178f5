import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_games_bench_prints_a_row_per_game_and_expert():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/games.py"), "--seconds", "0.05"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert {r.split(" | ")[0][2:] for r in rows} == {"tictactoe", "connect_four", "othello"}
    assert len(rows) == 6
    for row in rows:
        nodes_per_second = float(row.split(" | ")[5].replace(",", ""))
        assert nodes_per_second > 0


def test_experts_bench_reports_a_match():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/experts.py"), "tictactoe", "minimax", "random", "--games", "6"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = proc.stdout.strip()
    assert line.startswith("tictactoe: minimax vs random: +")
    assert "-0," in line  # the perfect player never loses


def test_policy_bench_prints_batching_gain_and_training_rate():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/policy.py"),
            "--size",
            "nano",
            "--game",
            "tictactoe",
            "--seconds",
            "0.2",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = proc.stdout
    for label in ["inference, batch 1", "inference, batch 256", "imitation training"]:
        assert f"| {label}" in out
    assert "native nano: batching gain" in out


def test_policy_bench_puts_a_tiny_llama_beside_the_native_model():
    args = ["--backbone", "hf", "--size", "nano", "--game", "tictactoe", "--seconds", "0.2"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/policy.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "| figure | native nano | tiny Llama 2x64 |" in out
    assert "| greedy generation, batch 64 (new tokens/s) |" in out and "tiny Llama 2x64: batching gain" in out


def test_actors_bench_prints_a_row_per_face_and_actor_count():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/actors.py"),
            "--game",
            "tictactoe",
            "--size",
            "nano",
            "--simulations",
            "4",
            "--games-per-actor",
            "4",
            "--seconds",
            "0.5",
            "--warmup",
            "0.5",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=180,
    ).stdout
    rows = [line.split(" | ")[:2] for line in out.splitlines() if line.startswith(("| text |", "| board |"))]
    assert rows == [["| text", "1"], ["| text", "2"], ["| board", "1"], ["| board", "2"]]
    assert "time in network" in out and "text: 2 actors / 1 actor" in out
    assert "2 actor(s): board / text:" in out


def test_scale_bench_prints_learner_and_inference_rates_on_the_device_present():
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/scale.py"),
            "--game",
            "tictactoe",
            "--size",
            "nano",
            "--seconds",
            "0.3",
            "--clients",
            "2",
            "--request",
            "8",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "device cpu" in proc.stdout.splitlines()[0] or "device cuda" in proc.stdout.splitlines()[0]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    whats = [r.split(" | ")[0][2:] for r in rows]
    assert whats[0].startswith("learner") and "server, 2 clients x 8" in whats[-1]
    assert len(rows) == 4 and all(float(r.split(" | ")[2].rstrip(" |").replace(",", "")) > 0 for r in rows)


def test_verifier_bench_prints_a_row_per_seed_and_thread_count():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/verifier.py"), "--steps", "2", "--seeds", "0,1", "--threads", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| 0", "| 1", "| worst"]
    assert all(0 <= float(x) <= 1 for r in rows[:2] for x in r.split(" | ")[2:9])


def test_tictactoe_bench_trains_imitation_per_seed_and_rates_a_checkpoint(tmp_path):
    bench = [sys.executable, str(ROOT / "bench/tictactoe_optimal.py")]
    tiny = ["transcripts.games=40", "transcripts.workers=1", "imitation.eval_every=2"]
    out = subprocess.run(
        [*bench, "--imitate", "4", "--seeds", "0", "--threads", "1", "--out", str(tmp_path), *tiny],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    row = out.splitlines()[-1].split(" | ")
    assert row[:2] == ["| 0", "1"] and row[2].endswith("of 4520") and float(row[3]) > 0
    out = subprocess.run(
        [*bench, str(tmp_path / "t1_s0/checkpoints/imitation")], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[-1].endswith(f"| 0 | {row[2]} |")  # the same checkpoint, the same rate


def test_value_noise_bench_finds_no_noise_under_a_perfect_expert_and_some_under_an_exploring_one(tmp_path):
    def ratio(expert: str) -> float:
        data = tmp_path / f"{expert}.jsonl"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "selfplay.transcripts",
                "--game",
                "tictactoe",
                "--expert",
                expert,
                "--games",
                "60",
                "--out",
                str(data),
                "--workers",
                "1",
                "--opening-plies",
                "2",
                "--no-progress",
            ],
            check=True,
            capture_output=True,
        )
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench/value_noise.py"),
                str(data),
                "--positions",
                "30",
                "--continuations",
                "4",
                "--workers",
                "1",
                "--opening-plies",
                "2",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return float(out.splitlines()[-1].split("|")[3])

    # perfect play decides every outcome after the random opening (0.04-0.15 over three seeds); random
    # moves leave much of it to chance (0.70-1.02)
    assert ratio("minimax") < 0.35 < ratio("minimax:epsilon=0.5")


def test_corrections_bench_runs_every_arm_and_rates_it(tmp_path):
    data = tmp_path / "teacher.jsonl"
    teacher = ["--game", "connect_four", "--expert", "alphabeta:depth=2", "--games", "40"]
    make = [sys.executable, "-m", "selfplay.transcripts", *teacher, "--out", str(data), "--no-progress"]
    subprocess.run(make, check=True, cwd=ROOT)
    bench = [sys.executable, str(ROOT / "bench/corrections.py"), "--data", str(data), "--work", str(tmp_path)]
    tiny = ["--steps", "20", "--rounds", "1", "--games", "4", "--round-steps", "10"]
    proc = subprocess.run(
        [*bench, *tiny, "--arena-games", "2", "--positions", "300"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split(" | ")[0] for r in rows] == [
        "| arm",
        "| imitation",
        "| rounds against the teacher",
        "| rounds against itself",
        "| as many imitation steps",
    ]
    assert (tmp_path / "rounds_against_itself/checkpoints/corrections_1/model.safetensors").exists()


def test_teacher_support_bench_counts_right_samples_where_the_teacher_is_wrong(tmp_path):
    import agents

    cfg = agents.ModelConfig.preset("nano", vocab_size=agents.CharTokenizer().vocab_size, block_size=32)
    meta = {"game": "arithmetic", "env_options": {"digits": 2, "ops": "+"}}
    agents.save(agents.new_policy(cfg, device="cpu", seed=0, meta=meta), tmp_path / "ckpt", meta=meta)
    bench = [sys.executable, str(ROOT / "bench/teacher_support.py"), str(tmp_path / "ckpt")]
    args = ["--teacher", "no_carry", "--temperatures", "1,2", "--tasks", "40", "--group", "2"]
    proc = subprocess.run([*bench, *args], capture_output=True, text=True, check=True)
    first, *_ = proc.stdout.splitlines()
    n = int(first.split(": ")[1].split(" of ")[0])
    assert 10 < n < 30  # about half of 40 tasks need a carry
    rows = [
        line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert [r[0] for r in rows[1:]] == ["| 1", "| 2"]
    assert all(0 <= float(x.strip(" |")) <= 1 for r in rows[1:] for x in r[1:])
    bad = subprocess.run([*bench, "--teacher", "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown teacher 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def test_pretrained_bench_measures_a_gguf_model_beside_transformers_generate(tmp_path):
    from selfplay import tiny_model

    file = tiny_model.write_gguf(tiny_model.build("llama", tmp_path / "llama"), tmp_path / "tiny.gguf")
    argv = [sys.executable, str(ROOT / "bench/pretrained.py"), "--model", str(file), "--cache", str(tmp_path)]
    argv += ["--seconds", "0.05", "--dtypes", "float32", "--batches", "8"]
    argv += ["--only", "generate_ours,generate_transformers,train_lora"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rows = [r.split(" | ") for r in out.splitlines() if r.startswith(("| generate", "| train"))]
    assert [(r[0][2:], int(r[1])) for r in rows] == [
        ("generate_ours", 8),
        ("generate_transformers", 8),
        ("train_lora", 16),
    ]
    assert all(float(r[3]) > 0 and float(r[4].strip(" |")) > 0 for r in rows)  # a rate, a peak in MiB


def test_generation_bench_puts_the_old_path_beside_the_new_for_both_backbones():
    argv = ["--batches", "2", "--prompts", "16", "--new", "8", "--modes", "greedy,sampled"]
    argv += ["--seconds", "0.01"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/generation.py"), *argv], capture_output=True, text=True, check=True
    ).stdout
    rows = [r.split(" | ") for r in out.splitlines() if r.startswith("| native") or r.startswith("| Llama")]
    assert [(r[0][2:], r[4]) for r in rows] == [
        ("native nano", "greedy"),
        ("native nano", "sampled"),
        ("Llama 2x64", "greedy"),
        ("Llama 2x64", "sampled"),
    ]
    assert all(float(r[5].replace(",", "")) > 0 and float(r[6].replace(",", "")) > 0 for r in rows)


def test_forward_bench_puts_float32_beside_bfloat16_with_a_profile():
    argv = ["--batch", "8", "--seconds", "0.05"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench/forward.py"), *argv], capture_output=True, text=True, check=True
    ).stdout
    rows = [r.split(" | ") for r in out.splitlines() if r.startswith("| board") or r.startswith("| text")]
    assert [(r[0][2:], r[1]) for r in rows] == [
        ("board face", "old"),
        ("board face", "new"),
        ("board face", "bfloat16"),
        ("text face", "new"),
        ("text face", "bfloat16"),
    ]
    assert "aten::" in out and out.count("learner step") == 3


def test_generation_reference_is_rebuilt_by_its_bench(tmp_path):
    argv = ["--out", str(tmp_path), "--steps", "2", "--per-source", "2"]
    subprocess.run(
        [sys.executable, str(ROOT / "bench/generation_reference.py"), *argv], capture_output=True, check=True
    )
    import gzip
    import json

    import agents

    with gzip.open(tmp_path / "native.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 14 + 2  # 2 prompts of 7 sources, and every tenth again without a stop string
    policy = agents.load(tmp_path / "hf", device="cpu")
    assert policy.meta.get("backbone") == "hf"
