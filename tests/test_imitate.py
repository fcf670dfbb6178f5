"""Stage 1, imitation: data preparation, losses, the training loop and its command, bad input."""

import json

import pytest
import torch

import agents
import envs
from agents import lr_at
from selfplay.config import load_config
from selfplay.core.transcripts import generate, load_transcripts
from selfplay.games.imitate import ImitationError, build_examples, collate, legal_losses, main, train

TINY = [
    "model.size=nano",
    "model.block_size=64",
    "imitation.max_steps=12",
    "imitation.batch_size=16",
    "imitation.eval_every=6",
    "imitation.eval_positions=40",
    "imitation.warmup_steps=2",
    "imitation.device=cpu",
]


@pytest.fixture(scope="module")
def ttt_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ttt.jsonl"
    generate("tictactoe", "minimax:epsilon=0.3", 40, path, seed=0, workers=1, progress=False)
    return path


def config(tmp_path, *extra):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"game: tictactoe\nrun_dir: {tmp_path / 'run'}\ntranscripts:\n  expert: minimax\n")
    return load_config(cfg, [*TINY, *extra])


def tiny_policy(block_size=64):
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=block_size)
    return agents.new_policy(cfg, device="cpu", seed=0)


def test_loss_falls_only_on_move_tokens(ttt_data):
    policy = tiny_policy()
    examples = build_examples(load_transcripts(ttt_data), envs.make("tictactoe"), policy)
    explored = next(e for e in examples if not e.imitate)
    imitated = next(e for e in examples if e.imitate)
    batch = collate([imitated, explored], policy.tokenizer.pad_id, policy.device)
    y = batch["y"]
    assert (y[1] == -100).all()  # an explored (random) move teaches the value only
    targets = y[0][y[0] != -100].tolist()
    assert targets == imitated.move and targets[-1] == policy.tokenizer.eos_id
    assert policy.tokenizer.decode(targets) == imitated.state.action_to_text(
        imitated.state.text_to_action(policy.tokenizer.decode(targets))
    )
    assert batch["vidx"][0] == len(imitated.prompt) - 1


def test_training_changes_parameters_and_lowers_the_loss(ttt_data):
    policy = tiny_policy()
    examples = [e for e in build_examples(load_transcripts(ttt_data), envs.make("tictactoe"), policy)][:32]
    before = [p.detach().clone() for p in policy.model.parameters()]
    opt = torch.optim.AdamW(policy.model.parameters(), lr=3e-3)
    policy.model.train()
    first = None
    for _ in range(60):
        pl, vl, _ = legal_losses(policy, examples)
        loss = pl + 0.5 * vl
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.7 * first
    assert all(not torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))


def test_learning_rate_schedule(tmp_path):
    cfg = config(
        tmp_path, "imitation.lr=0.01", "imitation.warmup_steps=10", "imitation.min_lr_ratio=0.1"
    ).imitation
    kw = {"lr": cfg.lr, "warmup_steps": cfg.warmup_steps, "min_lr_ratio": cfg.min_lr_ratio}
    assert lr_at(0, steps=100, **kw) == pytest.approx(0.001)
    assert lr_at(9, steps=100, **kw) == pytest.approx(0.01)
    assert lr_at(55, steps=100, **kw) == pytest.approx(0.0055)
    assert lr_at(100, steps=100, **kw) == pytest.approx(0.001)
    # a budget in minutes: the share of it used drives the same cosine; ratio 1 (stage 2's default): constant
    assert lr_at(40, progress=0.5, **kw) == pytest.approx(0.0055)
    assert lr_at(40, progress=1.7, **kw) == pytest.approx(0.001)
    assert lr_at(40, progress=0.5, lr=0.01, warmup_steps=10) == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("loss", "positions"), [("legal", "learned"), ("tokens", "learned"), ("legal", "rope")]
)
def test_train_end_to_end_writes_checkpoint_summary_and_tensorboard(tmp_path, ttt_data, loss, positions):
    cfg = config(tmp_path, f"imitation.loss={loss}", f"model.positions={positions}")
    ckpt = train(cfg, ttt_data, tmp_path / "run", progress=False)
    policy = agents.load(ckpt, device="cpu")
    assert policy.model.cfg.positions == positions
    meta = agents.read_meta(ckpt)
    assert meta["stage"] == "imitation" and meta["game"] == "tictactoe" and meta["step"] in (6, 12)
    summary = json.loads((tmp_path / "run/imitation.json").read_text())
    assert 0 <= summary["val_action_accuracy"] <= 1 and summary["steps_run"] == 12
    assert list((tmp_path / "run/tb/imitation").glob("events.out.tfevents.*"))
    state = envs.make("tictactoe").new_initial_state()
    assert policy.act([state])[0] in state.legal_actions()


def test_command_line(tmp_path, ttt_data, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"game: tictactoe\nrun_dir: {tmp_path / 'run'}\ntranscripts:\n  path: {ttt_data}\n")
    assert main([str(cfg), *TINY, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (
        "held-out move agreement" in out
        and (tmp_path / "run/checkpoints/imitation/model.safetensors").exists()
    )


def test_transcripts_of_another_game_are_refused_before_training(tmp_path):
    other = tmp_path / "c4.jsonl"
    generate("connect_four", "random", 3, other, workers=1, progress=False)
    with pytest.raises(ImitationError, match=r"c4\.jsonl:1: transcript is for game 'connect_four'"):
        train(config(tmp_path), other, tmp_path / "run", progress=False)
    assert not (tmp_path / "run/checkpoints").exists()


def test_empty_transcripts_are_refused(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ImitationError, match=r"empty\.jsonl: the file holds no transcripts"):
        train(config(tmp_path), empty, tmp_path / "run", progress=False)


def test_context_shorter_than_the_longest_prompt_is_refused(tmp_path, ttt_data):
    with pytest.raises(ImitationError, match=r"model\.block_size = 32 is shorter than .*\(56 tokens\)"):
        train(
            config(tmp_path, "model.block_size=32", "model.tokenizer=char"),
            ttt_data,
            tmp_path / "run",
            progress=False,
        )
    with pytest.raises(ImitationError, match=r"model\.block_size = 8 is shorter than .*tokens\)"):
        train(config(tmp_path, "model.block_size=8"), ttt_data, tmp_path / "run", progress=False)
    assert not (tmp_path / "run/checkpoints").exists()


def test_main_reports_bad_input_without_a_traceback(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"game: tictactoe\nrun_dir: {tmp_path / 'run'}\ntranscripts:\n  path: {empty}\n")
    assert main([str(cfg), *TINY, "--no-progress"]) == 2
    assert "holds no transcripts" in capsys.readouterr().err


def test_repeated_positions_merge_into_the_experts_move_distribution(ttt_data):
    from selfplay.games.imitate import merge_duplicates

    policy = tiny_policy()
    examples = build_examples(load_transcripts(ttt_data), envs.make("tictactoe"), policy)
    merged = merge_duplicates(examples)
    assert len({e.state.key() for e in examples}) == len(merged) < len(examples)
    start = next(e for e in merged if e.state.move_number() == 0)
    firsts = [e for e in examples if e.state.move_number() == 0]
    imitated = [e for e in firsts if e.imitate]
    assert start.value == pytest.approx(sum(e.value for e in firsts) / len(firsts))
    assert sum(p for _, p in start.targets) == pytest.approx(1.0)
    assert len(start.targets) == len({tuple(e.move) for e in imitated}) > 1  # the expert's ties, all kept
    loss_merged, _, n = legal_losses(policy, [start])
    loss_each, _, _ = legal_losses(policy, imitated)
    assert n == 1 and loss_merged.item() == pytest.approx(loss_each.item(), rel=1e-4)
