"""The language-model policy: tokenizer, model, constrained scoring, sampling, generation, checkpoints."""

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import agents
import envs


@pytest.fixture(scope="module", params=["learned", "rope"])
def policy(request):
    """Every test below runs with both kinds of positions: packed scoring, the KV cache and checkpoints
    must agree with a plain causal pass either way."""
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset(
        "nano", vocab_size=tok.vocab_size, block_size=256, positions=request.param
    )
    return agents.new_policy(cfg, device="cpu", seed=0, meta={"game": "connect_four"})


def random_states(name, n, seed=0):
    return envs.random_states(envs.make(name), n, seed=seed)


def test_tokenizer_round_trip_and_unknown_characters():
    tok = agents.CharTokenizer()
    for name in envs.names():
        prompt = envs.make(name).new_initial_state().prompt()
        assert tok.decode(tok.encode(prompt)) == prompt
    assert tok.decode([tok.bos_id, *tok.encode("ab"), tok.eos_id, tok.pad_id]) == "ab"
    with pytest.raises(agents.TokenizerError, match="'é' is not in the tokenizer"):
        tok.encode("café")
    assert agents.CharTokenizer.from_dict(tok.to_dict()).vocab == tok.vocab


def test_model_config_validation():
    with pytest.raises(ValueError, match="multiple of n_head"):
        agents.ModelConfig(vocab_size=10, n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="unknown model size 'huge'"):
        agents.ModelConfig.preset("huge", vocab_size=10)
    with pytest.raises(ValueError, match="positions must be 'learned' or 'rope', got 'alibi'"):
        agents.ModelConfig(vocab_size=10, positions="alibi")


def test_rope_attention_sees_offsets_not_absolute_positions():
    """Shifting every position by the same amount leaves a rotary model's output unchanged (offsets are
    all it sees); a model with learned positions changes."""
    idx = torch.randint(0, 20, (2, 12))
    shift = torch.arange(12).expand(2, 12) + 30
    for positions, same in (("rope", True), ("learned", False)):
        torch.manual_seed(0)
        model = agents.GPT(
            agents.ModelConfig(
                vocab_size=20, block_size=64, n_layer=2, n_head=2, n_embd=16, positions=positions
            )
        )
        with torch.no_grad():
            a, _ = model(idx)
            b, _ = model(idx, positions=shift)
        assert torch.allclose(a, b, atol=1e-5) == same, positions
        assert ("pos_emb.weight" in model.state_dict()) == (positions == "learned")


def _naive_logprob(policy, prompt, text):
    """The move's log-likelihood from a plain causal pass over prompt + move alone."""
    p, m = policy.encode_prompt(prompt), policy.encode_move(text)
    with torch.no_grad():
        hidden, _ = policy.model(torch.tensor([p + m]))
        lp = F.log_softmax(policy.model.lm_head(hidden), -1)[0]
        value = policy.model.value(hidden[0, len(p) - 1])
    return sum(lp[len(p) - 1 + j, t].item() for j, t in enumerate(m)), value.item()


@pytest.mark.parametrize("name", ["tictactoe", "connect_four", "othello"])
def test_batched_tree_scoring_equals_one_sequence_per_move(policy, name):
    states = random_states(name, 5)
    evals = policy.evaluate(states)
    for s, e in zip(states, evals, strict=True):
        assert e.actions == s.legal_actions()
        assert e.probs.shape == (len(e.actions),) and abs(e.probs.sum() - 1) < 1e-5
        assert -1 <= e.value <= 1
        for a, lp in zip(e.actions, e.logprobs, strict=True):
            naive, value = _naive_logprob(policy, s.prompt(), s.action_to_text(a))
            assert lp == pytest.approx(naive, abs=1e-4)
        assert e.value == pytest.approx(value, abs=1e-5)


def test_batch_does_not_change_results(policy):
    states = random_states("othello", 6, seed=3)
    together = policy.evaluate(states)
    alone = [policy.evaluate([s])[0] for s in states]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_act_greedy_and_sampled(policy):
    states = random_states("connect_four", 8)
    greedy = policy.act(states)
    assert greedy == [e.best() for e in policy.evaluate(states)]
    rng = np.random.default_rng(0)
    sampled = [policy.act(states[:1], temperature=5.0, rng=rng)[0] for _ in range(60)]
    assert set(sampled) <= set(states[0].legal_actions()) and len(set(sampled)) > 1


def test_evaluate_refuses_finished_games(policy):
    s = envs.make("tictactoe").new_initial_state()
    for a in (0, 3, 1, 4, 2):
        s.apply_action(a)
    with pytest.raises(ValueError, match="finished tictactoe"):
        policy.evaluate([s])


def test_generate_free_text_with_stop_strings(policy):
    outs = policy.generate(["12+34=", "7*8="], max_new_tokens=10, temperature=0.0)
    assert len(outs) == 2 and all(isinstance(o, str) and len(o) <= 10 for o in outs)
    # Greedy generation is deterministic and agrees with step-by-step argmax without a cache.
    prompt = "12+34="
    ids = policy.encode_prompt(prompt)
    for _ in range(5):
        with torch.no_grad():
            hidden, _ = policy.model(torch.tensor([ids]))
            ids.append(int(policy.model.lm_head(hidden[0, -1]).argmax()))
        if ids[-1] == policy.tokenizer.eos_id:
            break
    expected = policy.tokenizer.decode(ids[len(policy.encode_prompt(prompt)) :])
    assert policy.generate([prompt], max_new_tokens=5, temperature=0.0)[0] == expected[:5]
    stop = policy.generate([prompt], max_new_tokens=10, temperature=1.0, top_k=5, stop=["\n"], seed=1)[0]
    assert "\n" not in stop


def test_checkpoint_round_trip(policy, tmp_path):
    path = agents.save(policy, tmp_path / "ckpt", meta={"step": 7, "stage": "imitation"})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "meta.json", "model.safetensors"]
    loaded = agents.load(path, device="cpu")
    assert loaded.meta["step"] == 7 and loaded.meta["game"] == "connect_four"
    assert agents.read_meta(path)["stage"] == "imitation"
    states = random_states("connect_four", 4)
    for a, b in zip(policy.evaluate(states), loaded.evaluate(states), strict=True):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-6)
    agents.save(policy, path, meta={"step": 8})  # overwrite in place, atomically
    assert agents.read_meta(path)["step"] == 8
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary left behind


def _bigger_model(path):
    config = json.loads((path / "config.json").read_text())
    config["model"]["n_embd"] = 128
    (path / "config.json").write_text(json.dumps(config))


def _truncate(path):
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_truncate, "model.safetensors: unreadable or truncated"),
        (lambda p: (p / "model.safetensors").unlink(), "model.safetensors: missing"),
        (lambda p: (p / "config.json").unlink(), "config.json: missing"),
        (lambda p: (p / "meta.json").write_text("[1"), "meta.json: not valid JSON"),
        (_bigger_model, "model.safetensors: does not match .*config.json"),
    ],
)
def test_corrupt_checkpoints_are_named_errors(policy, tmp_path, mutate, message):
    path = agents.save(policy, tmp_path / "ckpt")
    mutate(path)
    with pytest.raises(agents.CheckpointError, match=message):
        agents.load(path)


def test_missing_checkpoint_directory(tmp_path):
    with pytest.raises(agents.CheckpointError, match="nowhere: no checkpoint directory"):
        agents.load(tmp_path / "nowhere")


def test_device_auto_is_cpu_here():
    assert agents.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_bpe_learns_cells_and_moves_as_single_tokens(tmp_path):
    game = envs.make("tictactoe")
    texts = []
    for s in random_states("tictactoe", 200):
        texts += [s.prompt(), *s.legal_texts()]
    tok = agents.BPETokenizer.train(texts, merges=60)
    prompt = random_states("tictactoe", 1, seed=9)[0].prompt()
    ids = tok.encode(prompt)
    assert tok.decode(ids) == prompt and len(ids) < len(prompt) / 2
    pieces = [tok.vocab[i] for i in ids]
    assert all(re.fullmatch(r"\s*\S*", p) for p in pieces)  # merges never cross a space
    assert len(tok.encode("b2")) == 1 and tok.encode(" X") != tok.encode(" O")
    assert tok.decode(tok.encode("unseen text!")) == "unseen text!"  # falls back to characters
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=64)
    policy = agents.new_policy(cfg, tokenizer=tok, device="cpu", seed=0)
    loaded = agents.load(agents.save(policy, tmp_path / "bpe"), device="cpu")
    assert isinstance(loaded.tokenizer, agents.BPETokenizer) and loaded.tokenizer.merges == tok.merges
    state = game.new_initial_state()
    np.testing.assert_allclose(
        policy.evaluate([state])[0].logprobs, loaded.evaluate([state])[0].logprobs, atol=1e-6
    )
