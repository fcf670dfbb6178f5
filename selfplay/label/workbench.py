"""The workbench's backend, one for the web page and the terminal: what an item shows, and the record a
person's answer makes.

    compare  a prompt and 2-3 anonymous completions (from one or two checkpoints) in a random order;
             the person picks the best, a tie, or "all bad"
    correct  a prompt the model got wrong (by the environment's score, else the verifier; with neither,
             every prompt) and its answer; the person writes the right one, accepts the suggested one
             (the environment's expert) or skips (the answer is right after all)
    arena    the person types a prompt, two anonymous checkpoints answer, the person votes; the names are
             shown after the vote
    audit    judged comparisons or votes shown again, as they were, to a person or a stricter judge, whose
             agreement with the judge is the report (`audit_report`)

Every form answers one claim of the queue (`selfplay.label.queue`) by its one-time token, and the record
is built from what the claim showed, so a post can name an item and a choice, nothing more.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import envs
import selfplay.arena.ratings as ratings
from selfplay.io.labels import AUDIT, COMPARISON, CORRECTION, VOTE, load_votes, now, write_audit_report
from selfplay.label.queue import Claim, FormError, Queue

MODES = ("compare", "correct", "arena", "audit")
MAX_TEXT = 10_000  # characters of a typed prompt or correction


@dataclass(frozen=True)
class Item:
    """A prompt to label, with its environment task when it comes from one."""

    id: str
    prompt: str
    task: envs.Task | None = None
    where: str | None = None  # FILE:LINE, for a prompt file's


@dataclass(frozen=True)
class Sampling:
    """How answers are sampled; recorded in every record."""

    temperature: float = 1.0
    top_k: int | None = None
    max_new_tokens: int = 64
    seed: int = 0

    def seed_for(self, item: str, k: int) -> int:
        """The seed of answer `k` to `item`: a restarted server writes the same answers."""
        h = hashlib.sha256(f"{self.seed}/{item}/{k}".encode()).digest()
        return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class View:
    """What a labeller is shown (as text: the page escapes it)."""

    mode: str
    token: str
    prompt: str
    item: str = ""
    options: list[tuple[str, str]] = field(default_factory=list)  # (choice, text) of each answer
    suggestion: str | None = None  # correct: the expert's answer
    judged: str = ""  # correct: why the answer is taken to be wrong


class Workbench:
    """One mode over one queue: `next` or `ask` hands out a view, `submit` records the answer to it.

    `models` maps each checkpoint's name to what generates its text (a policy or a thinking sampler);
    `wrong(item, answer)` says why an answer is wrong, or None when it is right (correct mode); `audited`
    holds the judged records an audit shows again (their mode is `of`)."""

    def __init__(
        self,
        mode: str,
        queue: Queue,
        models: Mapping[str, Any],
        *,
        items: Sequence[Item] = (),
        sampling: Sampling = Sampling(),
        n: int = 2,
        env: envs.RewardEnv | None = None,
        source: dict[str, Any] | None = None,
        wrong=None,
        audited: Sequence[dict[str, Any]] = (),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        need = {"compare": (1, 2), "correct": (1, 1), "arena": (2, None), "audit": (0, 0)}[mode]
        if len(models) < need[0] or (need[1] is not None and len(models) > need[1]):
            most = "" if need[1] is None else f" and at most {need[1]}"
            raise ValueError(f"{mode} takes at least {need[0]}{most} checkpoints, got {len(models)}")
        if mode == "compare" and n not in (2, 3):
            raise ValueError(f"compare shows 2 or 3 completions, got {n}")
        if mode == "audit":  # the records' own tasks, where `items` (the env's) hold them
            pool = {it.task.id: it.task for it in items if it.task is not None}
            items = [Item(r["id"], r["prompt"], pool.get(r["source"].get("task"))) for r in audited]
            if not items:
                raise ValueError("audit: no records to audit")
        if mode != "arena" and not items:
            raise ValueError(f"{mode} needs prompts: an environment's tasks or a prompt file")
        self.mode, self.queue, self.models, self.env = mode, queue, dict(models), env
        self.items = {it.id: it for it in items}
        self.sampling, self.n, self.source, self.wrong = sampling, n, source or {}, wrong
        self.audited = {r["id"]: r for r in audited}
        self.of = mode  # the mode whose forms it shows: an audit's, the audited records'
        if mode == "audit":
            self.of = "compare" if "completions" in next(iter(audited)) else "arena"
        self.live_ratings = True  # the arena's table after every vote (a judge's run writes it at the end)

    # --- generation ------------------------------------------------------------------------------
    def _answer(self, model: str, prompt: str, seed: int) -> str:
        s = self.sampling
        knobs = {"temperature": s.temperature, "top_k": s.top_k, "max_new_tokens": s.max_new_tokens}
        stop = self.env.stop if self.env is not None else ()
        return self.models[model].generate([prompt], stop=stop, seed=seed, **knobs)[0]

    def _source(self, item: Item) -> dict[str, Any]:
        if item.task is None or self.env is None:
            return dict(self.source)
        return {"env": self.env.name, "options": self.env.options, "task": item.task.id}

    def _show(self, item_id: str) -> dict[str, Any] | str:
        item, names = self.items[item_id], sorted(self.models)
        if self.mode == "audit":
            r = self.audited[item_id]
            keep = ("prompt", "source", "sampling", "completions", "pick", "a", "b", "winner", "labeller")
            return {k: r[k] for k in keep if k in r}
        common = {"prompt": item.prompt, "source": self._source(item), "sampling": asdict(self.sampling)}
        if self.mode == "compare":
            shown = [
                {"text": self._answer(m, item.prompt, self.sampling.seed_for(item.id, k)), "model": m}
                for k, m in zip(range(self.n), itertools.cycle(names))
            ]
            random.Random(self.sampling.seed_for(item.id, -1)).shuffle(shown)
            return {**common, "completions": shown}
        model = names[0]
        answer = self._answer(model, item.prompt, self.sampling.seed_for(item.id, 0))
        judged = self.wrong(item, answer) if self.wrong is not None else {"by": "none"}
        if judged is None:
            return f"{model} answered right"
        suggestion = None
        if self.env is not None and item.task is not None:
            suggestion = self.env.expert(item.task)
        return {**common, "model": model, "answer": answer, "judge": judged, "suggestion": suggestion}

    # --- what the page and the terminal call -------------------------------------------------------
    def next(self, labeller: str, *, session: str | None = None) -> View | None:
        """The labeller's item (compare, correct), or None when nothing is left (`session`: a program's,
        `Queue.next`)."""
        if self.mode == "arena":
            raise ValueError("the arena has no queue of prompts: the labeller types one (`ask`)")
        claim = self.queue.next(labeller, self.items, self._show, session=session)
        return None if claim is None else self.view(claim)

    def ask(self, labeller: str, prompt: str, task: envs.Task | None = None) -> View:
        """Arena: two anonymous checkpoints, the pair with fewest votes so far, answer a typed prompt (or
        an environment's task, when a judge votes)."""
        if self.mode != "arena":
            raise ValueError("only the arena takes typed prompts")
        prompt = _text(prompt, "prompt")
        pair = self._pair()
        item = Item(f"arena-{secrets.token_hex(6)}", prompt, task)
        self.items[item.id] = item
        source = {"typed": True} if task is None else self._source(item)
        shown = {"prompt": prompt, "source": source, "sampling": asdict(self.sampling)}
        try:
            for k, (side, m) in enumerate(zip("ab", pair, strict=True)):
                shown[side] = {
                    "text": self._answer(m, prompt, self.sampling.seed_for(item.id, k)),
                    "model": m,
                }
        except ValueError as e:  # a character the model cannot read, a prompt longer than its context
            raise FormError(f"the models cannot answer this prompt: {e}") from None
        return self.view(self.queue.open(labeller, item.id, shown))

    def _pair(self) -> tuple[str, str]:
        counts = {p: 0 for p in itertools.combinations(sorted(self.models), 2)}
        if self.queue.records.exists():
            for v in load_votes(self.queue.records):
                key = tuple(sorted((v.a, v.b)))
                if key in counts:
                    counts[key] += 1
        fewest = min(counts.values())
        pair = list(random.choice([p for p, c in counts.items() if c == fewest]))
        random.shuffle(pair)
        return pair[0], pair[1]

    def view(self, claim: Claim) -> View:
        s, mode = claim.shown, self.of
        if mode == "compare":
            options = [(str(i), c["text"]) for i, c in enumerate(s["completions"])]
            return View("compare", claim.token, s["prompt"], claim.item, options)
        if mode == "correct":
            judged = s["judge"]
            why = {
                "env": "the environment scores it {score:g}",
                "verifier": "the verifier gives it {score:.2f}",
            }
            text = why.get(judged["by"], "not judged").format(**judged)
            answer = [("answer", s["answer"])]
            return View("correct", claim.token, s["prompt"], claim.item, answer, s["suggestion"], text)
        options = [("a", s["a"]["text"]), ("b", s["b"]["text"])]
        return View("arena", claim.token, s["prompt"], claim.item, options)

    def choices(self, claim: Claim) -> tuple[str, ...]:
        """The choices a form for this claim may send."""
        if "completions" in claim.shown:
            return (*(str(i) for i in range(len(claim.shown["completions"]))), "tie", "all_bad")
        if self.mode == "correct":
            return ("write", "skip", *(("accept",) if claim.shown["suggestion"] is not None else ()))
        return ("a", "b", "tie", "both_bad")

    def submit(self, labeller: str, token: str, choice: str, text: str = "") -> dict[str, Any] | None:
        """Record the labeller's answer to the form holding `token`; the record, or None for a skip.
        `FormError` (nothing recorded) for a malformed, unknown or replayed form."""

        def make(claim: Claim) -> dict[str, Any] | None:
            allowed = self.choices(claim)
            if choice not in allowed:
                raise FormError(f"choice {choice!r} is not one of {', '.join(allowed)}")
            s = claim.shown
            common = {"prompt": s["prompt"], "time": now(), "source": s["source"], "sampling": s["sampling"]}
            if self.mode == "audit":
                judged = s["pick"] if "pick" in s else s["winner"]
                mine = int(choice) if choice.isdigit() else choice
                of = {"labeller": s["labeller"], "choice": judged}
                return {"format": AUDIT, **common, "of": of, "choice": mine, "agree": _same(s, mine, judged)}
            if self.mode == "compare":
                pick = int(choice) if choice.isdigit() else choice
                return {"format": COMPARISON, **common, "completions": s["completions"], "pick": pick}
            if self.mode == "arena":
                return {"format": VOTE, **common, "a": s["a"], "b": s["b"], "winner": choice}
            if choice == "skip":
                return None
            right = s["suggestion"] if choice == "accept" else _text(text, "correction")
            return {
                "format": CORRECTION,
                **common,
                "completion": right,
                "rejected": s["answer"],
                "model": s["model"],
                "suggested": choice == "accept",
                "judge": s["judge"],
            }

        record = self.queue.submit(token, labeller, make)
        if self.mode == "arena" and self.live_ratings:
            self.write_ratings(png=False)
        return record

    def write_ratings(self, *, png: bool = True) -> None:
        """Arena: the league table of every vote so far beside the votes (the PNG at the session's end)."""
        if self.mode == "arena" and self.queue.records.exists():
            ratings.vote_ratings([self.queue.records], self.queue.dir, png=png)

    def close(self) -> None:
        """The end of a session: the arena's ratings with their PNG, an audit's report."""
        self.write_ratings(png=True)
        if self.mode == "audit" and self.queue.records.exists():
            write_audit_report(self.queue.dir)


def _same(shown: dict[str, Any], a: int | str, b: int | str) -> bool:
    """Whether two answers to one comparison agree: the same choice, or picks of the same text (picking
    one of two identical completions is no choice)."""
    if a == b:
        return True
    texts = [c["text"] for c in shown.get("completions", [])]
    return isinstance(a, int) and isinstance(b, int) and texts[a] == texts[b]


def _text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FormError(f"the {what} is empty")
    if len(value) > MAX_TEXT:
        raise FormError(f"the {what} is longer than {MAX_TEXT} characters")
    return value.strip()
