"""A Hugging Face causal LM as the policy's model (`agents.hf`), on the tiny Llama and GPT-2 that
`selfplay.tiny_model` builds offline: packed scoring, batching, generation with the KV cache, search and
imitation work through the same `Policy` as the native model; pickled weights are refused; checkpoints
(whole, or a LoRA adapter naming its base) round-trip, and are told apart from native ones."""

import json
import random
import shutil

import numpy as np
import pytest
import torch

import agents
import envs
from agents import mcts
from agents.hf import HFConfig, Lora, policy_from_pretrained, weights_hash
from agents.policy import Query
from envs.experts import make_expert
from selfplay import tiny_model
from selfplay.games.imitate import batch_losses
from selfplay.games.imitation_data import Example

ARCHS = ["llama", "gpt2"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {arch: tiny_model.build(arch, root / arch) for arch in ARCHS}


def policy(model_dirs, arch):
    torch.manual_seed(1)
    p = policy_from_pretrained(model_dirs[arch], device="cpu")
    torch.nn.init.normal_(p.model.value_head.weight, std=0.05)  # a value head that is not all zeros
    return p


@pytest.mark.parametrize("arch", ARCHS)
def test_packed_scoring_equals_one_candidate_at_a_time_and_a_position_alone(model_dirs, arch):
    pol = policy(model_dirs, arch)
    game = envs.make("connect_four")
    short, long = game.new_initial_state(), game.new_initial_state()
    for a in (3, 3, 2, 4, 4):
        long.apply_action(a)
    q_short, q_long = pol.query(short), pol.query(long)
    (lp_long,), (v_long,) = pol.score([q_long])
    alone = [pol.score([Query(q_long.prompt, (m,))])[0][0][0] for m in q_long.moves]
    np.testing.assert_allclose(lp_long, alone, atol=1e-4)
    (_, lp_l), values = pol.score([q_short, q_long])  # rows of different lengths: padding
    np.testing.assert_allclose(lp_l, lp_long, atol=1e-4)
    assert values[1] == pytest.approx(v_long, abs=1e-5) and values[0] != pytest.approx(v_long, abs=1e-5)
    [e] = pol.evaluate([long])
    assert e.actions == long.legal_actions() and e.probs.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("arch", ARCHS)
def test_generation_with_the_kv_cache_equals_generation_without_it(model_dirs, arch):
    pol = policy(model_dirs, arch)
    prompts = ["12+34=", "connect_four\na b c d e f g\n"]
    cached = pol.generate(prompts, max_new_tokens=8, temperature=0.0)
    tok = pol.tokenizer
    for prompt, text in zip(prompts, cached, strict=True):
        ids, new = pol.encode_prompt(prompt), []
        with torch.no_grad():
            for _ in range(8):  # the whole sequence again at every step, no cache, no padding
                hidden, _ = pol.model(torch.tensor([ids + new]))
                logits = pol.model.lm_head(hidden[:, -1]).float()[0]
                logits[[tok.pad_id, tok.bos_id]] = -torch.inf
                nxt = int(logits.argmax())
                if nxt == tok.eos_id:
                    break
                new.append(nxt)
        assert text == tok.decode(new)


def test_search_and_imitation_drive_an_hf_policy(model_dirs):
    pol = policy(model_dirs, "llama")
    game, rng = envs.make("tictactoe"), random.Random(0)
    expert = make_expert("minimax", game, seed=0)
    states, seen = [], set()
    while len(states) < 48:  # positions from random play, each once
        s = game.new_initial_state()
        for _ in range(rng.randrange(0, 6)):
            s.apply_action(rng.choice(s.legal_actions()))
        if not s.is_terminal() and s.key() not in seen:
            seen.add(s.key())
            states.append(s)
    moves = expert.act(states)
    examples = [
        Example(pol.encode_prompt(s.prompt()), pol.encode_move(s.action_to_text(m)), 0.0, True, i, s)
        for i, (s, m) in enumerate(zip(states, moves, strict=True))
    ]

    def agreement():
        return np.mean([e.best() == m for e, m in zip(pol.evaluate(states), moves, strict=True)])

    before = agreement()
    opt = torch.optim.AdamW([p for p in pol.model.parameters() if p.requires_grad], lr=3e-3)
    pol.model.train()
    for _ in range(80):
        loss, _, _ = batch_losses(pol, examples, "legal")
        opt.zero_grad()
        loss.backward()
        opt.step()
    pol.model.eval()
    after = agreement()
    assert after >= max(0.9, before + 0.4), (before, after)  # 48 positions learned (112k parameters)
    out = mcts.run(states[:4], pol.evaluate, simulations=16)
    assert all(o.policy.sum() == pytest.approx(1.0) for o in out)


def test_pickled_weights_are_refused(tmp_path, model_dirs):
    fake = tmp_path / "pickled"
    fake.mkdir()
    for f in model_dirs["gpt2"].iterdir():
        if f.suffix != ".safetensors":
            (fake / f.name).write_bytes(f.read_bytes())
    (fake / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    with pytest.raises(
        ValueError, match=r"only pickled weights \(pytorch_model\.bin\); selfplay loads safetensors"
    ):
        policy_from_pretrained(fake, device="cpu")


# --- checkpoints ------------------------------------------------------------------------------------
def _nudged(pol):
    """Trainable weights moved off their start, so a round trip that dropped any would show."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in pol.model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return pol


def _same_play(a, b):
    states = [envs.make("tictactoe").new_initial_state() for _ in range(2)]
    states[1].apply_action(4)
    ea, eb = a.evaluate(states), b.evaluate(states)
    for x, y in zip(ea, eb, strict=True):
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-5)
        assert x.value == pytest.approx(y.value, abs=1e-6)
    prompts = ["12+34=", "7+8="]
    assert a.generate(prompts, max_new_tokens=4, temperature=0.0) == b.generate(
        prompts, max_new_tokens=4, temperature=0.0
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_full_and_lora_checkpoints_round_trip(tmp_path, model_dirs, arch):
    full = _nudged(policy(model_dirs, arch))
    ckpt = agents.save(full, tmp_path / "full", meta={"step": 1})
    assert (ckpt / "lm" / "model.safetensors").is_file() and agents.checkpoint.backbone(ckpt) == "hf"
    _same_play(full, agents.load(ckpt, device="cpu"))

    torch.manual_seed(0)
    lora = _nudged(policy_from_pretrained(model_dirs[arch], device="cpu", lora=Lora(r=4)))
    trained = lora.model.trained_state()
    assert trained and all("lora_" in k or k.startswith("value_head.") for k in trained)
    assert {
        id(p)
        for g in agents.adamw(lora.model.parameters(), lr=1e-3, weight_decay=0.1).param_groups
        for p in g["params"]
    } == {id(p) for p in lora.model.parameters() if p.requires_grad}
    ckpt = agents.save(lora, tmp_path / "lora", meta={"step": 2})
    assert not (ckpt / "lm").exists() and (ckpt / "adapter" / "adapter_model.safetensors").is_file()
    config = json.loads((ckpt / "config.json").read_text())
    assert config["base"]["sha256"] == weights_hash(lora.model.lm) and config["lora"]["r"] == 4
    back = agents.load(ckpt, device="cpu")
    _same_play(lora, back)
    assert back.model.trained_state().keys() == trained.keys()


def test_an_adapter_refuses_a_missing_or_different_base(tmp_path, model_dirs):
    base = tmp_path / "base"
    shutil.copytree(model_dirs["llama"], base)
    pol = _nudged(policy_from_pretrained(base, device="cpu", lora=Lora(r=4)))
    ckpt = agents.save(pol, tmp_path / "run" / "checkpoints" / "step_000001")
    other = tiny_model.build("llama", tmp_path / "other", seed=5)  # same shapes, other weights
    shutil.rmtree(base)
    shutil.copytree(other, base)
    with pytest.raises(agents.CheckpointError, match=r"base model .*base has different weights now"):
        agents.load(ckpt, device="cpu")
    shutil.rmtree(base)
    with pytest.raises(agents.CheckpointError, match=r"base model .*base is not there.*restore the base"):
        agents.load(ckpt, device="cpu")


def test_native_and_hf_checkpoints_are_told_apart(tmp_path, model_dirs, ttt_nano):
    with pytest.raises(
        agents.CheckpointError, match=r"a Hugging Face model directory \(llama\).*backbone: hf"
    ):
        agents.load(model_dirs["llama"], device="cpu")
    ckpt = agents.save(policy(model_dirs, "gpt2"), tmp_path / "hf")
    assert isinstance(agents.read_model_config(ckpt), HFConfig)
    assert isinstance(agents.read_model_config(ttt_nano), agents.ModelConfig)
    config = json.loads((ckpt / "config.json").read_text())
    del config["backbone"]  # an HF checkpoint that says nothing of its backbone is read as native: refused
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(agents.CheckpointError, match=r"config.json: .*"):
        agents.load(ckpt, device="cpu")
    native = tmp_path / "native"
    shutil.copytree(ttt_nano, native)
    config = json.loads((native / "config.json").read_text())
    (native / "config.json").write_text(json.dumps({**config, "backbone": "hf"}))
    with pytest.raises(agents.CheckpointError, match=r"native.*config.json: model: unknown key"):
        agents.load(native, device="cpu")
    with pytest.raises(agents.CheckpointError, match="a policy checkpoint, not a verifier"):
        agents.load_verifier(agents.save(policy(model_dirs, "gpt2"), tmp_path / "p"))


def test_chat_template_frames_every_prompt_and_survives_a_checkpoint(tmp_path, model_dirs):
    plain = policy_from_pretrained(model_dirs["llama"], device="cpu")
    chat = policy_from_pretrained(model_dirs["llama"], device="cpu", chat_template=True)
    ids = chat.encode_prompt("12+34=")
    assert chat.tokenizer.decode(ids) == "<|bos|>user\n12+34=<|eos|>\n<|bos|>assistant\n"
    assert plain.encode_prompt("12+34=") == [plain.tokenizer.bos_id, *plain.tokenizer.encode("12+34=")]
    state = envs.make("tictactoe").new_initial_state()
    assert not np.allclose(chat.evaluate([state])[0].logprobs, plain.evaluate([state])[0].logprobs)
    back = agents.load(agents.save(chat, tmp_path / "chat"), device="cpu")
    assert back.model.cfg.chat_template and back.encode_prompt("12+34=") == ids
    _same_play(chat, back)
    bare = tmp_path / "bare"
    shutil.copytree(model_dirs["llama"], bare)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="the tokenizer has no chat template"):
        policy_from_pretrained(bare, device="cpu", chat_template=True)


def test_generation_ends_at_eos_where_the_tokenizer_pads_with_it_too(model_dirs, monkeypatch):
    """SmolLM2's and Qwen2's <|im_end|> is their end and their padding: padding is never written, the end
    always may be."""
    p = policy_from_pretrained(model_dirs["llama"], device="cpu")
    eos = p.tokenizer.eos_id
    monkeypatch.setattr(p.tokenizer, "pad_id", eos)
    head = p.model.lm_head

    def wants_to_end(hidden):  # a model sure that its answer is over
        logits = head(hidden).clone()
        logits[..., eos] += 100
        return logits

    monkeypatch.setattr(p.model, "lm_head", wants_to_end)
    assert p.generate(["12+34=", "7+8="], max_new_tokens=5, temperature=0.0) == ["", ""]
    assert p.generate(["12+34="], max_new_tokens=5, temperature=1.0, seed=0) == [""]


def test_a_bfloat16_model_trains_float32_adapters_and_heads_as_policy_and_verifier(model_dirs):
    """Over a bfloat16 base the trained parameters (LoRA adapters, value head) stay float32, and every
    path that reads them (scoring, value, the verifier's head and its training) takes bfloat16 hidden
    states."""
    import selfplay.text.verifier as V
    from agents.verifier import Verifier

    torch.manual_seed(0)
    p = policy_from_pretrained(model_dirs["llama"], device="cpu", dtype="bfloat16", lora=Lora(r=4))
    assert p.model.lm.dtype == torch.bfloat16
    trained = [x for x in p.model.parameters() if x.requires_grad]
    assert trained and all(x.dtype == torch.float32 for x in trained)
    assert np.isfinite(p.evaluate([envs.make("tictactoe").new_initial_state()])[0].value)
    v = Verifier.from_policy(p, seed=0, likelihood=1.0)
    data = [V.Labelled("12+34=", c, float(c == "46"), c) for c in ("46", "47", "45", "46")]
    data += [V.Labelled("1+1=", c, float(c == "2"), c) for c in ("2", "3", "11", "2")]
    V.train(v, pointwise=data, steps=2, batch_size=4, lm_weight=1.0, val_fraction=0.5, progress=False)
    scores = v.score(["12+34=", "1+1="], ["46", "3"])
    assert scores.shape == (2,) and np.isfinite(scores).all()
