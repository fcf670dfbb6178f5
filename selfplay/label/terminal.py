"""The workbench at a terminal: the same items and records as the web page, answered by typed lines
(piped input works; end of input stops as `q` does). Every answer is saved as it is given."""

from __future__ import annotations

from typing import IO

from selfplay.io.labels import escape_controls
from selfplay.label.queue import FormError
from selfplay.label.workbench import View, Workbench

LETTERS = "abc"
HELP = {
    "compare": "pick the best: {letters}; t tie; x all bad; q quit",
    "correct": "type the right answer; /accept takes the suggestion; /skip if the answer is right; /quit",
    "arena": "vote: a, b, t tie, x both bad; q quit",
}


def _show(view: View, out: IO[str]) -> None:
    safe = escape_controls  # prompts and answers are shown, never let act on the terminal
    out.write(f"\nprompt: {safe(view.prompt)}\n")
    if view.mode == "correct":
        out.write(f"model's answer: {safe(view.options[0][1])}  ({view.judged})\n")
        if view.suggestion is not None:
            out.write(f"suggested: {safe(view.suggestion)}\n")
    else:
        for letter, (_, text) in zip(LETTERS, view.options, strict=False):
            out.write(f"  {letter}) {safe(text)}\n")
    letters = ", ".join(LETTERS[: len(view.options)])
    out.write(HELP[view.mode].format(letters=letters) + "\n")


def _read(inp: IO[str], out: IO[str], ask: str) -> str | None:
    out.write(ask)
    out.flush()
    line = inp.readline()
    return None if line == "" else line.rstrip("\n")


def _choice(view: View, line: str) -> tuple[str, str] | None:
    """(choice, text) for the workbench, or None to quit; FormError for a line that is neither."""
    word = line.strip()
    if view.mode == "correct":
        commands = {"/quit": None, "/accept": ("accept", ""), "/skip": ("skip", "")}
        return commands.get(word, ("write", line))
    if word == "q":
        return None
    keys = {"t": "tie", "x": "all_bad" if view.mode == "compare" else "both_bad"}
    for letter, (choice, _) in zip(LETTERS, view.options, strict=False):
        keys[letter] = choice
    if word not in keys:
        raise FormError(f"{word!r} is not one of {', '.join(keys)} or q")
    return keys[word], ""


def run_terminal(bench: Workbench, labeller: str, inp: IO[str], out: IO[str]) -> int:
    """Label until the queue is empty or the labeller quits; returns the exit status."""
    if not labeller.strip():
        out.write("error: who labels? give --labeller NAME\n")
        return 2
    labelled = 0
    while True:
        if bench.mode == "arena":
            prompt = _read(inp, out, "\nyour prompt (empty line or q to quit): ")
            if prompt is None or prompt.strip() in ("", "q"):
                break
            try:
                view = bench.ask(labeller, prompt)
            except FormError as e:
                out.write(f"refused: {e}\n")
                continue
        else:
            view = bench.next(labeller)
            if view is None:
                out.write("nothing left to label\n")
                break
        _show(view, out)
        answered = False
        while not answered:
            line = _read(inp, out, "> ")
            try:
                choice = None if line is None else _choice(view, line)
                if choice is None:
                    break
                record = bench.submit(labeller, view.token, *choice)
            except FormError as e:
                out.write(f"refused: {e}\n")
                continue
            answered = True
            labelled += record is not None
            if bench.mode == "arena":
                out.write(f"a was {record['a']['model']}, b was {record['b']['model']}\n")
        if not answered:
            break
    bench.close()
    out.write(f"{labelled} labels saved\n")
    return 0
