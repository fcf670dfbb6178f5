"""The learned verifier: training on labels and on comparisons, held-out ROC-AUC, best-of-N, data files,
robust scoring, checkpoints, command line.

The task throughout: "max 4817=" is answered by the largest digit ("8"). Its prompts are many (10^4) and
the rule is simple, so a nano verifier trained for a few seconds generalises to prompts it never saw.

A few seconds of training sit near a learning transition: the network first learns which digits a prompt
holds (held-out ROC-AUC about 0.8), then that the answer is the largest one (near 1). When it crosses
depends on the seed and on the machine's float rounding (the `trained` fixture crossed by step 500 on one
machine and stalled at 0.78 on another), so the trained figures asserted here hold on either side of it;
`bench/verifier.py` measures the strong figures. "Measured" below: seeds 0-9 (of the network, data and
batches) on one thread and 0-2 on two, and runs stalled short of the transition where said.
"""

import itertools
import json
import random
import zlib

import numpy as np
import pytest
import torch

import agents
import selfplay.text.verifier as V

DIGITS = "0123456789"
_ALL = ["".join(d) for d in itertools.product(DIGITS, repeat=4)]
random.Random(0).shuffle(_ALL)
TEST, TRAIN = _ALL[:300], _ALL[300:]  # the test prompts are in no training data


def max_task(n_prompts: int, seed: int, pool: list[str] = TRAIN) -> list[V.Labelled]:
    """Per prompt (distinct, from `pool`), the right answer (label 1) and a wrong one (label 0) as likely
    to be a high digit as the right one: another digit of the prompt, or the answer to another prompt."""
    rng = random.Random(seed)
    out = []
    for d in rng.sample(pool, n_prompts):
        right = max(d)
        near = [c for c in d if c != right]
        wrong = right
        while wrong == right:
            wrong = rng.choice(near) if near and rng.random() < 0.5 else max(rng.choice(pool))
        out += [V.Labelled(f"max {d}=", right, 1.0), V.Labelled(f"max {d}=", wrong, 0.0)]
    return out


def answer(prompt: str) -> str:
    return max(prompt[4:8])


def nano(block_size: int = 16, seed: int = 0) -> agents.Verifier:
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=block_size)
    return agents.new_verifier(cfg, tokenizer=tok, device="cpu", seed=seed)


class Writer:
    """Records TensorBoard scalars."""

    def __init__(self):
        self.scalars: dict[str, list[tuple[int, float]]] = {}

    def add_scalar(self, tag, value, step):
        self.scalars.setdefault(tag, []).append((step, float(value)))


class NoisyPolicy:
    """A sampler that is right 35% of the time; its greedy answer is right for about half the prompts."""

    def __init__(self):
        self.batches: list[int] = []

    def generate(self, prompts, *, max_new_tokens=64, temperature=1.0, top_k=None, stop=(), seed=None):
        self.batches.append(len(prompts))
        rng = random.Random(seed)
        out = []
        for p in prompts:
            right = answer(p)
            wrong = [c for c in DIGITS if c != right]
            if temperature <= 0:
                out.append(right if zlib.crc32(p.encode()) % 2 else wrong[zlib.crc32(p.encode()) % 9])
            else:
                out.append(right if rng.random() < 0.35 else rng.choice(wrong))
        return out


@pytest.fixture(scope="module")
def heldout():
    return max_task(len(TEST), seed=99, pool=TEST)


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    verifier, writer = nano(), Writer()
    result = V.train(
        verifier,
        pointwise=max_task(6000, seed=0),
        steps=500,
        batch_size=128,
        lr=3e-3,
        eval_every=250,
        seed=0,
        writer=writer,
        progress=False,
    )
    return verifier, result, writer


# --- training --------------------------------------------------------------------------------------
def test_pointwise_training_lowers_the_loss_and_separates_held_out_completions(trained, heldout):
    verifier, result, writer = trained
    assert result.initial.roc_auc < 0.7 and result.initial.pointwise_loss > 0.6  # it starts knowing nothing
    # far above that on either side of the transition; measured: loss ratio 0.00-0.38 (stalled: 0.73),
    # ROC-AUC 0.93-1.00 (0.78), held-out accuracy 0.88-1.00 (0.73)
    assert result.final.pointwise_loss < 0.85 * result.initial.pointwise_loss
    assert result.final.roc_auc >= 0.7, result.final
    assert result.train_labelled + result.final.n_labelled == 12_000 and result.final.n_labelled == 1200
    fresh = V.evaluate(verifier, pointwise=heldout)
    assert fresh.roc_auc >= 0.7 and fresh.accuracy >= 0.65, fresh
    untrained = nano()
    changed = [
        not torch.equal(a, b)
        for a, b in zip(untrained.model.parameters(), verifier.model.parameters(), strict=True)
    ]
    assert all(changed)
    assert {"losses/total", "losses/pointwise", "charts/learning_rate", "val/roc_auc", "val/loss"} <= set(
        writer.scalars
    )
    assert "losses/pairwise" not in writer.scalars
    assert [s for s, _ in writer.scalars["val/roc_auc"]] == [250, 500]


def test_pairwise_only_training_ranks_the_right_answer_first(heldout):
    pairs = V.make_pairs(max_task(6000, seed=1))
    assert len(pairs) == 6000 and all(p.chosen == answer(p.prompt) for p in pairs)
    verifier, writer = nano(seed=1), Writer()
    result = V.train(
        verifier,
        pairwise=pairs,
        steps=600,  # past the transition (400 were not, for seed 4: 0.896)
        batch_size=64,
        lr=3e-3,
        eval_every=100,
        writer=writer,
        progress=False,
    )
    assert result.train_labelled == 0 and result.final.n_labelled == 0
    # measured: loss ratio 0.00-0.07, pairwise accuracy 0.978-1.00 (held out: 0.963-1.00). Preferring
    # the higher digit alone scores 0.78-0.79, and an untrained network up to 0.78 (held out)
    assert result.final.pairwise_loss < 0.5 * result.initial.pairwise_loss
    assert result.final.pairwise_accuracy >= 0.9, result.final
    fresh = V.evaluate(verifier, pairwise=V.make_pairs(heldout))
    assert fresh.pairwise_accuracy >= 0.9, fresh
    assert "losses/pairwise" in writer.scalars and "losses/pointwise" not in writer.scalars


def test_both_kinds_train_together():
    data = max_task(60, seed=2)
    verifier = nano(seed=2)
    result = V.train(
        verifier, pointwise=data, pairwise=V.make_pairs(data), steps=5, eval_every=5, progress=False
    )
    m = result.final
    assert m.n_labelled > 0 and m.n_pairs > 0 and m.loss == pytest.approx(m.pointwise_loss + m.pairwise_loss)
    assert result.train_pairs == result.train_labelled // 2


def writes_right_answers(verifier: agents.Verifier, prompts: list[str]) -> float:
    """How often the verifier's own language model's greedy next character after a prompt is its answer."""
    tok = verifier.tokenizer
    seqs = [[tok.bos_id, *tok.encode(p)] for p in prompts]
    with torch.no_grad():
        hidden = verifier.hidden(seqs)
        logits = verifier.model.lm_head(hidden[torch.arange(len(seqs)), [len(s) - 1 for s in seqs]])
    return float(
        np.mean([tok.decode([int(i)]) == answer(p) for i, p in zip(logits.argmax(-1), prompts, strict=True)])
    )


def test_lm_weight_also_teaches_the_right_completions_and_only_those(trained, heldout):
    data = max_task(6000, seed=0)
    verifier, writer = nano(seed=3), Writer()
    result = V.train(
        verifier,
        pointwise=data,
        steps=300,
        batch_size=128,
        lr=3e-3,
        lm_weight=1.0,
        eval_every=300,
        writer=writer,
        progress=False,
    )
    # measured: LM loss 0.002-0.045, ROC-AUC 0.91-1.00, right answers written 0.98-1.00, and 0.00-0.35 by
    # the `trained` fixture's network
    assert "losses/lm" in writer.scalars and writer.scalars["losses/lm"][-1][1] < 1.0
    assert result.final.roc_auc >= 0.8, result.final
    prompts = sorted({r.prompt for r in heldout})
    hits = writes_right_answers(verifier, prompts)
    assert hits >= 0.9, hits  # it writes the right answer to prompts it never saw
    plain = writes_right_answers(trained[0], prompts)
    assert plain < 0.5, plain  # without the LM loss the network does not

    # the LM loss is next-token cross-entropy on exactly the right completions' tokens (and <eos>)
    tok = verifier.tokenizer
    batch = [V.Labelled("max 1234=", "4", 1.0), V.Labelled("max 1234=", "3", 0.0)]
    point, labels, _ = V._encode(verifier, batch, [])
    _, _, lm = V._losses(verifier, point, torch.tensor(labels), [], [0])
    ids = point[0][0]
    with torch.no_grad():
        logits = verifier.model.lm_head(verifier.hidden([ids])[0])
    want = torch.nn.functional.cross_entropy(logits[-3:-1], torch.tensor([tok.encode("4")[0], tok.eos_id]))
    assert lm.item() == pytest.approx(want.item(), rel=1e-5)
    with pytest.raises(ValueError, match="lm_weight"):
        V.train(nano(), pointwise=data[:100], steps=1, lm_weight=-1.0, progress=False)


def test_a_likelihood_verifier_adds_its_weighted_log_likelihood_and_keeps_it_through_a_checkpoint(tmp_path):
    verifier = nano(seed=4)
    plain = agents.Verifier(verifier.model, verifier.tokenizer, device="cpu")
    with_lm = agents.Verifier(verifier.model, verifier.tokenizer, device="cpu", likelihood=0.5)
    prompts, completions = ["max 1234=", "max 9870="], ["4", "77"]
    items = [verifier.encode_parts(p, c) for p, c in zip(prompts, completions, strict=True)]
    tok = verifier.tokenizer
    with torch.no_grad():
        logp = []
        for ids, start in items:  # the completion's tokens and <eos>, one at a time
            lp = torch.log_softmax(verifier.model.lm_head(verifier.hidden([ids])[0]), -1)
            logp.append(sum(float(lp[j - 1, ids[j]]) for j in range(start, len(ids))))
        assert items[1][0][items[1][1] :] == [*tok.encode("77"), tok.eos_id]
        got = with_lm.logits(prompts, completions) - plain.logits(prompts, completions)
    assert got.tolist() == pytest.approx([0.5 * x for x in logp], rel=1e-4)
    assert (
        with_lm.parameters()[-1] is with_lm.likelihood_weight
        and len(with_lm.parameters()) == len(plain.parameters()) + 1
    )
    agents.save_verifier(with_lm, tmp_path / "v")
    back = agents.load_verifier(tmp_path / "v", device="cpu")
    assert back.likelihood_weight.item() == 0.5
    assert back.score(prompts, completions) == pytest.approx(with_lm.score(prompts, completions))
    config = json.loads((tmp_path / "v" / "config.json").read_text())
    config["likelihood_weight"] = "high"
    (tmp_path / "v" / "config.json").write_text(json.dumps(config))
    with pytest.raises(agents.CheckpointError, match=r"config\.json: likelihood_weight"):
        agents.load_verifier(tmp_path / "v", device="cpu")
    # a checkpoint without the key (written before it existed) scores with the head alone
    agents.save_verifier(plain, tmp_path / "p")
    assert agents.load_verifier(tmp_path / "p", device="cpu").likelihood_weight is None


def test_training_refuses_data_it_cannot_use():
    verifier = nano()
    with pytest.raises(V.VerifierDataError, match="no training data"):
        V.train(verifier, steps=1)
    with pytest.raises(V.VerifierDataError, match="at least 2 distinct prompts"):
        V.train(verifier, pointwise=[V.Labelled("p", "a", 1.0), V.Labelled("p", "b", 0.0)], steps=1)
    bad = [
        V.Labelled("max 1234=", "4", 1.0, "data.jsonl:1"),
        V.Labelled("max 5678=", "café", 0.0, "data.jsonl:2"),
    ]
    with pytest.raises(V.VerifierDataError, match=r"data.jsonl:2: character 'é'"):
        V.train(verifier, pointwise=bad, steps=1)
    with pytest.raises(ValueError, match="val_fraction"):
        V.train(verifier, pointwise=max_task(5, 0), steps=1, val_fraction=0.0)


def test_held_out_prompts_given_are_the_validation_set_and_never_trained_on():
    old, new = max_task(40, 0), max_task(10, 1, pool=TEST)  # a round of other prompts, as a refresh's
    held_out = {r.prompt for r in new[:6]}  # 3 prompts, 2 answers each
    verifier = nano()
    result = V.train(verifier, pointwise=old + new, steps=4, batch_size=8, held_out=held_out, progress=False)
    assert result.initial.n_labelled == result.final.n_labelled == 6
    assert result.train_labelled == len(old) + len(new) - 6
    kept = V.evaluate(verifier, pointwise=[r for r in new if r.prompt in held_out])
    final = (result.final.loss, result.final.roc_auc)
    assert final == pytest.approx((kept.loss, kept.roc_auc))  # the kept weights' metrics, measured once
    with pytest.raises(V.VerifierDataError, match="no record's prompt is held out"):
        V.train(nano(), pointwise=old, steps=1, held_out={"max 0000="}, progress=False)


def test_learning_rate_warms_up_then_decays():
    kw = {"steps": 100, "lr": 1.0, "warmup_steps": 10, "min_lr_ratio": 0.1}
    assert agents.lr_at(0, **kw) == pytest.approx(0.1)
    assert agents.lr_at(9, **kw) == pytest.approx(1.0)
    assert agents.lr_at(100, **kw) == pytest.approx(0.1)
    assert agents.lr_at(50, **kw) > agents.lr_at(80, **kw)


# --- using it --------------------------------------------------------------------------------------
def test_best_of_8_picks_right_answers_more_often_than_one_sample(trained, heldout):
    verifier, _, _ = trained
    prompts = sorted({r.prompt for r in heldout})
    policy = NoisyPolicy()

    def accuracy(completions):
        return float(np.mean([c == answer(p) for p, c in zip(prompts, completions, strict=True)]))

    greedy = accuracy(policy.generate(prompts, temperature=0.0))
    best8 = accuracy(V.best_of_n(policy, verifier, prompts, 8, temperature=1.0, max_new_tokens=2, seed=0))
    assert sum(policy.batches[1:]) == 8 * len(prompts) and max(policy.batches) == 512  # batched samples
    best1 = accuracy(V.best_of_n(policy, verifier, prompts, 1, temperature=1.0, max_new_tokens=2, seed=0))
    assert 0.4 < greedy < 0.6 and best1 < 0.45  # the policy alone: 0.49 and 0.30
    # best-of-8 measured: 0.77-0.98, beating greedy decoding (see bench/verifier.py); stalled: 0.52-0.60,
    # still far above one sample
    assert best8 >= best1 + 0.1, (greedy, best1, best8)


def test_verifier_as_a_monitor_of_the_true_score(trained, heldout):
    verifier, _, _ = trained
    scores = verifier.score([r.prompt for r in heldout], [r.completion for r in heldout])
    d = V.disagreement(scores, [r.label for r in heldout])
    assert d.n == len(heldout) and d.rate <= 0.35  # measured 0.00-0.12 (0.27 stalled); chance is 0.5
    assert d.rate == pytest.approx((d.false_accept + d.false_reject) / 2)  # as many right as wrong
    assert d.rate == pytest.approx(1 - V.evaluate(verifier, pointwise=heldout).accuracy)
    hand = V.disagreement([0.9, 0.2, 0.7, 0.1], [1.0, 1.0, 0.0, 0.0])
    assert (hand.rate, hand.false_accept, hand.false_reject, hand.n) == (0.5, 0.5, 0.5, 4)
    assert np.isnan(V.disagreement([0.9], [1.0]).false_accept)


def test_label_completions_labels_each_sample_with_the_scorer(capsys):
    prompts = ["max 1234=", "max 9000="]
    score = lambda i, c: float(c == answer(prompts[i]))  # noqa: E731
    records = V.label_completions(NoisyPolicy(), prompts, score, 5, seed=3, batch_size=4, progress=True)
    assert len(records) == 10 and [r.prompt for r in records] == [prompts[0]] * 5 + [prompts[1]] * 5
    assert all(r.label == float(r.completion == answer(r.prompt)) for r in records)
    bar = capsys.readouterr().err  # the sampling's progress
    assert "sampling: 100%" in bar and "10/10" in bar
    with pytest.raises(ValueError, match=r"scorer gave 2 for prompt 0, sample 0"):
        V.label_completions(NoisyPolicy(), prompts, lambda i, c: 2, 1)


def test_label_completions_with_a_real_policy_then_train_on_them():
    torch.set_num_threads(1)
    tok = agents.CharTokenizer()
    policy = agents.new_policy(
        agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=16), device="cpu", seed=0
    )
    prompts = [r.prompt for r in max_task(20, seed=4)[::2]]
    records = V.label_completions(
        policy, prompts, lambda i, c: float(c == answer(prompts[i])), 4, max_new_tokens=2, seed=0
    )
    assert len(records) == 80 and all(len(r.completion) <= 2 for r in records)
    verifier = agents.Verifier.from_policy(policy, seed=0)
    assert V.train(verifier, pointwise=records, steps=2, progress=False).steps == 2


def test_roc_auc_is_the_chance_a_positive_outranks_a_negative():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    scores = rng.integers(0, 5, 200) / 4  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert V.roc_auc(labels, scores) == pytest.approx(brute)
    assert V.roc_auc([0, 1, 1], [0.1, 0.5, 0.9]) == 1.0
    assert V.roc_auc([1, 0], [0.1, 0.9]) == 0.0
    assert V.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert np.isnan(V.roc_auc([1, 1], [0.1, 0.9]))
    with pytest.raises(ValueError, match="one length"):
        V.roc_auc([0, 1], [0.5])


# --- data files ------------------------------------------------------------------------------------
GOOD_PAIR = '{"prompt": "max 1234=", "chosen": "4", "rejected": "3"}'


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "max 1234=", "chosen": "4", "rejected": "3"', "not valid JSON"),
        ('{"prompt": "max 1234=", "chosen": "4"}', "missing key 'rejected'"),
        ('{"prompt": "max 1234=", "chosen": 4, "rejected": "3"}', "'chosen' must be a string, got int"),
        ('["max 1234=", "4", "3"]', "expected a JSON object, got list"),
    ],
)
def test_a_malformed_comparisons_file_is_an_error_naming_its_line(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(f"{GOOD_PAIR}\n\n{line}\n{GOOD_PAIR}\n")
    with pytest.raises(V.VerifierDataError, match=rf"pairs.jsonl:3: {message}"):
        V.load_comparisons(path)


@pytest.mark.parametrize(
    ("label", "shown"), [("1.5", "1.5"), ("true", "True"), ('"1"', "'1'"), ("null", "None")]
)
def test_a_label_out_of_range_is_an_error_naming_its_line(tmp_path, label, shown):
    path = tmp_path / "labelled.jsonl"
    good = '{"prompt": "p", "completion": "c", "label": 1}'
    path.write_text(f'{good}\n{{"prompt": "p", "completion": "c", "label": {label}}}\n')
    with pytest.raises(
        V.VerifierDataError, match=rf"labelled.jsonl:2: 'label' must be a number in \[0, 1\], got {shown}$"
    ):
        V.load_labelled(path)


def test_empty_missing_and_binary_files_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(V.VerifierDataError, match=r"empty.jsonl: the file holds no records"):
        V.load_labelled(tmp_path / "empty.jsonl")
    with pytest.raises(V.VerifierDataError, match=r"nope.jsonl: no such file"):
        V.load_comparisons(tmp_path / "nope.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(GOOD_PAIR.encode() + b"\n\xff\xfe\n")
    with pytest.raises(V.VerifierDataError, match=r"bin.jsonl:2: not UTF-8"):
        V.load_comparisons(tmp_path / "bin.jsonl")


def test_records_round_trip_through_files(tmp_path):
    labelled = max_task(3, seed=5)
    V.save_records(tmp_path / "l.jsonl", labelled)
    assert V.load_labelled(tmp_path / "l.jsonl") == labelled
    pairs = V.make_pairs(labelled)
    V.save_records(tmp_path / "c.jsonl", pairs)
    back = V.load_comparisons(tmp_path / "c.jsonl")
    assert back == pairs and back[1].where == f"{tmp_path / 'c.jsonl'}:2"


# --- the model -------------------------------------------------------------------------------------
def test_bad_completions_are_scored_without_exceptions():
    verifier = nano(block_size=24)
    completions = ["", None, 123, "x" * 1_000_000, "café ☃", "\x00\n\t", ["a"]]
    scores = verifier.score(["max 1234="] * len(completions), completions)
    assert scores.shape == (len(completions),) and np.all((scores >= 0) & (scores <= 1))
    assert verifier.score([], []).shape == (0,)
    assert verifier.score(["x" * 100_000], ["4"]).shape == (1,)  # a prompt too long on its own keeps its end
    assert verifier.encode("x" * 100, "4")[-3:] == [
        *verifier.tokenizer.encode("x4"),
        verifier.tokenizer.eos_id,
    ]
    # too long for the context: the completion loses its end, so only its start counts
    long_a, long_b = "7" * 30 + "a", "7" * 30 + "b"
    assert len(verifier.encode("max 1234=", long_a)) == 24
    assert verifier.score(["max 1234="], [long_a]) == verifier.score(["max 1234="], [long_b])
    assert verifier.score(["max 1234="], ["café"]) == verifier.score(["max 1234="], ["caf"])  # é dropped
    with pytest.raises(agents.TokenizerError):
        verifier.encode("p", "café", strict=True)


def test_a_batch_scores_like_one_at_a_time_and_logits_are_differentiable():
    verifier = nano()
    prompts, completions = ["max 1234=", "max 9=", "max 55555="], ["4", "not nine", ""]
    batch = verifier.score(prompts, completions)
    alone = np.concatenate([verifier.score([p], [c]) for p, c in zip(prompts, completions, strict=True)])
    np.testing.assert_allclose(batch, alone, atol=1e-6)
    logits = verifier.logits(prompts, completions)
    assert logits.shape == (3,) and logits.requires_grad
    np.testing.assert_allclose(torch.sigmoid(logits).detach().numpy(), batch, atol=1e-6)


def test_save_and_load_give_identical_scores(trained, heldout, tmp_path):
    verifier, _, _ = trained
    path = agents.save_verifier(verifier, tmp_path / "v", meta={"step": 500})
    loaded = agents.load_verifier(path, device="cpu")
    prompts, completions = [r.prompt for r in heldout], [r.completion for r in heldout]
    np.testing.assert_array_equal(loaded.score(prompts, completions), verifier.score(prompts, completions))
    assert loaded.meta["step"] == 500
    config = json.loads((path / "config.json").read_text())
    assert config["kind"] == "verifier" and config["format"] == "selfplay.verifier/1"
    agents.save_verifier(verifier, path)  # replacing an older one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]


def test_a_policy_checkpoint_is_not_a_verifier_nor_the_other_way_round(tmp_path):
    tok = agents.CharTokenizer()
    policy = agents.new_policy(agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size), device="cpu")
    agents.save(policy, tmp_path / "policy")
    with pytest.raises(agents.CheckpointError, match="a policy checkpoint, not a verifier"):
        agents.load_verifier(tmp_path / "policy")
    agents.save_verifier(nano(), tmp_path / "verifier")
    with pytest.raises(agents.CheckpointError, match=r"format 'selfplay\.verifier/1'"):
        agents.load(tmp_path / "verifier")
    weights = tmp_path / "verifier" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(agents.CheckpointError, match=r"model\.safetensors: unreadable or truncated"):
        agents.load_verifier(tmp_path / "verifier")
    with pytest.raises(agents.CheckpointError, match="no checkpoint directory"):
        agents.load_verifier(tmp_path / "nothing")


def test_a_verifier_starts_from_a_policy_with_a_fresh_head():
    tok = agents.CharTokenizer()
    policy = agents.new_policy(
        agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size), device="cpu", seed=0, meta={"step": 7}
    )
    verifier = agents.Verifier.from_policy(policy, seed=1)
    for (name, a), b in zip(policy.model.named_parameters(), verifier.model.parameters(), strict=True):
        assert torch.equal(a, b) != name.startswith("value_head.weight"), name
    assert verifier.meta["init"] == {"step": 7}
    with torch.no_grad():
        next(verifier.model.parameters()).add_(1.0)
    assert not torch.equal(next(verifier.model.parameters()), next(policy.model.parameters()))
    assert verifier.model.lm_head.weight is verifier.model.tok_emb.weight  # still tied in the copy


# --- command line ----------------------------------------------------------------------------------
def test_command_line_trains_saves_and_evaluates(tmp_path, capsys):
    data, pairs, tb = tmp_path / "labelled.jsonl", tmp_path / "pairs.jsonl", tmp_path / "tb"
    V.save_records(data, max_task(100, seed=6))
    V.save_records(pairs, V.make_pairs(max_task(100, seed=7)))
    argv = ["train", "--data", str(data), "--pairs", str(pairs), "--out", str(tmp_path / "v"), "--steps", "3"]
    assert V.main([*argv, "--block-size", "16", "--tb", str(tb), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "ROC-AUC" in out and "pairwise accuracy" in out
    assert any(tb.iterdir())
    assert agents.load_verifier(tmp_path / "v").meta["stage"] == "verifier"
    assert V.main(["eval", "--verifier", str(tmp_path / "v"), "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_labelled"] == 200 and 0 <= metrics["roc_auc"] <= 1
    tok = agents.CharTokenizer()
    policy = agents.new_policy(agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=16))
    agents.save(policy, tmp_path / "policy")
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "v2"), "--steps", "1", "--no-progress"]
    assert V.main([*argv, "--policy", str(tmp_path / "policy"), "--lm-weight", "1", "--likelihood"]) == 0
    v2 = agents.load_verifier(tmp_path / "v2")
    assert v2.model.cfg.block_size == 16 and v2.likelihood_weight is not None
    assert agents.load_verifier(tmp_path / "v").likelihood_weight is None


def test_command_line_reports_bad_input_with_its_line(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(f"{GOOD_PAIR}\n{{oops\n")
    assert V.main(["train", "--pairs", str(pairs), "--out", str(tmp_path / "v"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {pairs}:2: not valid JSON") and "Traceback" not in err
    assert not (tmp_path / "v").exists()
    assert V.main(["eval", "--verifier", str(tmp_path / "v"), "--pairs", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err
    V.save_records(pairs, V.make_pairs(max_task(3, seed=8)))
    assert V.main(["eval", "--verifier", str(tmp_path / "v"), "--pairs", str(pairs)]) == 2
    assert "no checkpoint directory" in capsys.readouterr().err
