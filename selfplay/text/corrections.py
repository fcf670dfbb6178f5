"""Correction rounds on a reward environment, between imitation and RL: the policy answers training tasks,
the run's judge (`judge.*`, or people: `judge.kind: people`) corrects the ones it got wrong through the
labelling workbench's `correct` mode, and imitation continues on the transcripts plus every correction so
far, the corrections repeated to make `corrections.share` of the data. `corrections.rounds` rounds; the
last checkpoint starts RL.

Keys: `corrections.rounds`, `.games` (tasks answered per round), `.temperature` (0: the greedy answer),
`.steps` (at `imitation.lr`), `.share`, `.seed`; the game-only keys (`opponent`, `expert`) do not
apply. Files: `RUN/labels/corrections.jsonl` (the workbench's, shared with people), and per round
`RUN/checkpoints/corrections_R`, `RUN/corrections_R.json`.
"""

from __future__ import annotations

from pathlib import Path

import agents
import selfplay.core.rundir as rundir
from selfplay.config import Config, fingerprint, section_dump
from selfplay.core.training import each_round
from selfplay.io.labels import LabelFileError
from selfplay.label import Queue, load_corrections
from selfplay.label.judges import make_judge, run_judge
from selfplay.label.workbench import Item, Sampling, Workbench
from selfplay.text.episodes import TaskSampler, held_out_ids, make_env, max_new_tokens, sampler
from selfplay.text.imitate import ImitationError, config_hash, train


def round_hash(config: Config, r: int) -> str:
    """What round `r` depends on: imitation's inputs, the judge, the corrections section (not `rounds`)."""
    game_only = {"rounds", "opponent", "expert", "opening_plies"}  # as hashed before opening_plies went
    cc = section_dump(config.corrections, "corrections", exclude=game_only)
    return fingerprint(config, {"judge"}, imitation=config_hash(config), corrections=cc, round=r)


def text_corrections_outputs(config: Config, run_dir: Path) -> list[rundir.Output]:
    """Each round's checkpoint, which may stay when this configuration made it."""
    return [
        rundir.made_output(
            f"correction round {r}'s checkpoint",
            run_dir / "checkpoints" / f"corrections_{r}",
            round_hash(config, r),
        )
        for r in range(1, config.corrections.rounds + 1)
    ]


def text_corrections_stage(
    config: Config, run_dir: Path, data: Path, imitation: Path, *, progress: bool = True
) -> Path:
    """`corrections.rounds` rounds from the imitation checkpoint; the last round's checkpoint (`imitation`
    itself with no rounds)."""
    make = lambda current, r: _round(config, run_dir, data, current, r, progress=progress)  # noqa: E731
    return each_round(config, run_dir, imitation, make, round_hash)


def _round(config: Config, run_dir: Path, data: Path, current: Path, r: int, *, progress: bool) -> Path:
    cc, env, labels = config.corrections, make_env(config), run_dir / "labels"
    who = None
    if config.judge.kind != "people":
        policy = agents.load(current, device=config.imitation.device)
        policy.model.eval()
        tasks = TaskSampler(env, held_out_ids(config, env), seed=[cc.seed, r, 47])(cc.games)
        items = [Item(t.id, env.prompt_for(t), t) for t in {t.id: t for t in tasks}.values()]
        judge = make_judge(config.judge.spec(), env=env, seed=config.judge.seed + r)

        def wrong(item: Item, answer: str) -> dict | None:
            score = env.score(item.task, answer)
            return None if score >= 1.0 else {"by": "env", "score": score}

        sampling = Sampling(cc.temperature, None, max_new_tokens(config, env), cc.seed + r)
        bench = Workbench(
            "correct",
            Queue(labels, "correct"),
            {current.name: sampler(policy, env)},
            items=items,
            sampling=sampling,
            env=env,
            wrong=wrong,
        )
        made = run_judge(bench, judge, progress=progress)
        print(f"corrections {r}: {current.name} wrong on {made} of {len(items)} tasks", end="")
        print(f"; corrected by {judge.name}")
        who = judge.name
    try:
        fixed = load_corrections(labels / "corrections.jsonl", labeller=who)
    except LabelFileError as e:
        raise ImitationError(
            f"corrections {r}: {e}; with judge.kind: people, correct first: python -m selfplay.label correct "
            f"--run {run_dir} --checkpoint {current.name}; then python -m selfplay.run --resume {run_dir}"
        ) from None
    steps = {"max_steps": cc.steps, "max_minutes": None}
    round_config = config.model_copy(update={"imitation": config.imitation.model_copy(update=steps)})
    meta = {"stage": "corrections", "round": r, "parent": rundir.rel(current, run_dir)}
    meta["config_hash"] = round_hash(config, r)
    ckpt = train(
        round_config,
        data,
        run_dir,
        progress=progress,
        start=current,
        more=fixed,
        share=cc.share,
        name=f"corrections_{r}",
        meta=meta,
    )
    s = rundir.read_json(run_dir / f"corrections_{r}.json")
    print(
        f"corrections {r}: held-out accuracy {s['held_out_accuracy']:.3f} (from "
        f"{s['untrained_accuracy']:.3f}) after {s['step']} steps, {len(fixed)} corrections so far"
    )
    return ckpt
