"""What RL has to find beyond a teacher: on held-out tasks its teacher gets wrong, how often a checkpoint's
samples are right, per sampling temperature. Group-relative RL learns only from groups that hold a right
answer; where this share is 0, it has nothing to reinforce.

    python bench/teacher_support.py RUN/checkpoints/imitation --teacher no_carry [--temperatures 1,2,3]

The environment and its options come from the checkpoint; tasks are the run's held-out ones (the same
seed); each task is sampled `--group` times, as an RL actor does.
"""

from __future__ import annotations

import argparse

import numpy as np

import agents
import envs
from envs.reward import sample_tasks
from selfplay.text.episodes import HELD_OUT_SEED, episode_scores, play


def support(
    policy: agents.Policy,
    env: envs.RewardEnv,
    teacher: str,
    temperatures: list[float],
    *,
    tasks: int = 500,
    group: int = 8,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Per temperature: the share of samples right, and of groups holding a right one, on the tasks of the
    first `tasks` held-out ones where `teacher` is wrong; and the share of samples that are its answer."""
    teach = env.teacher(teacher)
    held_out = sample_tasks(env, tasks, seed=seed + HELD_OUT_SEED)
    wrong = [t for t in held_out if env.score(t, teach(t)) < 1.0]
    if not wrong:
        raise SystemExit(f"teacher {teacher!r} is right on all {tasks} held-out tasks: nothing to find")
    flat = [t for t in wrong for _ in range(group)]
    rows = []
    policy.model.eval()
    for temperature in temperatures:
        episodes = play(
            policy, env, flat, temperature=temperature, max_new_tokens=env.max_completion_chars, seed=1
        )
        right = episode_scores(env, flat, episodes).reshape(len(wrong), group)
        theirs = np.mean([ep[-1][1].strip() == teach(t) for t, ep in zip(flat, episodes, strict=True)])
        rows.append(
            {
                "temperature": temperature,
                "tasks": len(wrong),
                "right": float((right >= 1.0).mean()),
                "groups": float((right >= 1.0).any(axis=1).mean()),
                "teacher": float(theirs),
            }
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument(
        "--teacher", required=True, help="a teacher of the checkpoint's environment, e.g. no_carry"
    )
    p.add_argument("--temperatures", default="1,2,3")
    p.add_argument(
        "--tasks", type=int, default=500, help="held-out tasks to pick the teacher's mistakes from"
    )
    p.add_argument("--group", type=int, default=8, help="samples per task (rl.group_size)")
    p.add_argument("--seed", type=int, default=0, help="the run's transcripts.seed (its held-out tasks)")
    args = p.parse_args()
    policy = agents.load(args.checkpoint, device="cpu")
    meta = agents.read_meta(args.checkpoint)
    env = envs.make(meta["game"], **meta.get("env_options", {}))
    temps = [float(t) for t in args.temperatures.split(",")]
    try:
        env.teacher(args.teacher)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    rows = support(policy, env, args.teacher, temps, tasks=args.tasks, group=args.group, seed=args.seed)
    print(
        f"{args.checkpoint}: {rows[0]['tasks']} of {args.tasks} held-out tasks where {args.teacher} is wrong"
    )
    print(
        f"| temperature | samples right | groups of {args.group} with a right one | samples = the teacher's |"
    )
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['temperature']:g} | {r['right']:.4f} | {r['groups']:.3f} | {r['teacher']:.3f} |")


if __name__ == "__main__":
    main()
