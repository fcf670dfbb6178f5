"""`python -m selfplay.tiny_model`: a tiny random Hugging Face causal LM and a tokenizer trained on the
project's own texts, written as an HF directory that the Auto classes load offline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer  # the `hf` extra (in `dev`: `make test`)

from selfplay import tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_the_command_writes_a_model_the_auto_classes_load_offline(tmp_path, arch, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "models" / arch
    argv = [sys.executable, "-m", "selfplay.tiny_model", "--arch", arch, "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out}" in proc.stdout
    files = {p.name for p in out.iterdir()}
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert json.loads((out / "config.json").read_text())["model_type"] == arch
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert model.config.vocab_size == len(tok) <= 512
    assert model.config.eos_token_id == tok.eos_token_id and model.config.pad_token_id == tok.pad_token_id
    # every text the policy reads or writes encodes without loss, in few tokens (the BPE learned them)
    texts = list(tiny_model.corpus(games=2, tasks=5, seed=1))
    assert texts and all(tok.decode(tok.encode(t, add_special_tokens=False)) == t for t in texts)
    chars = sum(len(t) for t in texts)
    tokens = sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)
    assert tokens < 0.75 * chars  # bytes would be 1.0
    assert tok.tokenize("47+38=85") == list("47+38=85")  # one token per digit, as Qwen2's tokenizer
    ids = torch.tensor([tok.encode("connect_four\nX to move\n", add_special_tokens=False)])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok)) and torch.isfinite(logits).all()


def test_the_same_seed_builds_the_same_model_and_a_used_directory_is_refused(tmp_path, capsys):
    a, b = tiny_model.build("llama", tmp_path / "a"), tiny_model.build("llama", tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
    before = (a / "model.safetensors").read_bytes()
    assert tiny_model.main(["--arch", "llama", "--out", str(a)]) == 2
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert (a / "model.safetensors").read_bytes() == before  # nothing lost
    with pytest.raises(SystemExit):
        tiny_model.main(["--arch", "mamba", "--out", str(tmp_path / "c")])
    assert not (tmp_path / "c").exists()
