"""Corrupt checkpoints are refused with the file and the key or tensor named, before any model is built:
overwritten weight bytes (NaN, inf), a config of the wrong types or sizes, a malformed tokenizer."""

import io
import json
import shutil
import struct
import time

import pytest

import agents
import agents.model
import selfplay.arena.cli as arena
import selfplay.arena.play as play
import selfplay.text.verifier as V


def _poison(weights, tensor, value):
    """Overwrite the first float of `tensor` in the file's bytes, as a bad disk or a stray write would."""
    with open(weights, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))  # header length, then the JSON header, then the data
        info = json.loads(f.read(n))[tensor]
        assert info["dtype"] == "F32"
        f.seek(8 + n + info["data_offsets"][0])
        f.write(struct.pack("<f", value))


def _edit_config(path, old, new):
    """Replace text in config.json as written (`1e6` stays a JSON float, not what json.dumps would write)."""
    config = path / "config.json"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))


def _set_config(path, edit):
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.fixture
def ckpt(ttt_nano, tmp_path):
    return shutil.copytree(ttt_nano, tmp_path / "policy")


def _forbid_building(monkeypatch):
    def refuse(self, cfg):
        raise AssertionError(f"the model was built from a bad config: {cfg}")

    monkeypatch.setattr(agents.model.GPT, "__init__", refuse)


@pytest.fixture
def never_build(monkeypatch):
    """Building the model from a bad config is already the failure (1000000 layers would never finish)."""
    _forbid_building(monkeypatch)


def _refused(path, *names, load=agents.load):
    with pytest.raises(agents.CheckpointError) as e:
        load(path)
    assert all(name in str(e.value) for name in names), str(e.value)


def _play_refuses(path, capsys, *names):
    argv = [str(path), "--game", "tictactoe"]
    assert play.main(argv, stdin=io.StringIO("quit\n"), stdout=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and all(name in err for name in names), err


def _arena_refuses(path, tmp_path, capsys, *names):
    out = tmp_path / "out"
    argv = ["--game", "tictactoe", "random", str(path), "--games", "2", "--workers", "1", "--out", str(out)]
    assert arena.main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and all(name in err for name in names), err
    assert not (out / "matches.jsonl").exists() or not (out / "matches.jsonl").read_text()  # no game played


def test_nan_weights_are_refused_naming_the_tensor(ckpt, capsys):
    _poison(ckpt / "model.safetensors", "blocks.1.attn.qkv.weight", float("nan"))
    names = (f"{ckpt / 'model.safetensors'}", "blocks.1.attn.qkv.weight", "NaN")
    _refused(ckpt, *names)
    _play_refuses(ckpt, capsys, *names)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_weights_are_refused_naming_the_tensor(ckpt, tmp_path, capsys, value):
    _poison(ckpt / "model.safetensors", "value_head.weight", value)
    names = (f"{ckpt / 'model.safetensors'}", "value_head.weight", "inf")
    _refused(ckpt, *names)
    _arena_refuses(ckpt, tmp_path, capsys, *names)


@pytest.mark.parametrize("n_layer", ["2.5", "1e6", "true", '"2"', "[2]"])
def test_n_layer_not_an_integer_is_refused_before_building(ckpt, never_build, capsys, n_layer):
    _edit_config(ckpt, '"n_layer": 2', f'"n_layer": {n_layer}')
    _refused(ckpt, f"{ckpt / 'config.json'}", "model.n_layer", "integer")
    _play_refuses(ckpt, capsys, f"{ckpt / 'config.json'}", "model.n_layer")


def test_a_million_layers_with_small_weights_are_refused_at_once(ckpt, never_build, tmp_path, capsys):
    _edit_config(ckpt, '"n_layer": 2', '"n_layer": 1000000')
    start = time.perf_counter()
    _refused(ckpt, f"{ckpt / 'config.json'}", f"{ckpt / 'model.safetensors'}", "model.n_layer", "1000000")
    assert time.perf_counter() - start < 5  # the header alone was read, nothing allocated
    _arena_refuses(ckpt, tmp_path, capsys, f"{ckpt / 'config.json'}", "model.n_layer")


def _more_tokens(config):
    """Two learned tokens in tokenizer and model alike: they agree, and only the weights can tell."""
    config["tokenizer"] = {"type": "bpe", "chars": config["tokenizer"]["chars"], "merges": ["ab", "cd"]}
    config["model"]["vocab_size"] += 2


@pytest.mark.parametrize(
    ("key", "edit"),
    [
        ("n_embd", lambda c: c["model"].update(n_embd=1024)),
        ("block_size", lambda c: c["model"].update(block_size=10**9)),
        ("positions", lambda c: c["model"].update(positions="rope")),
        ("vocab_size", _more_tokens),
    ],
)
def test_config_sizes_must_match_the_weights_header(ckpt, never_build, key, edit):
    _set_config(ckpt, edit)
    _refused(ckpt, f"{ckpt / 'config.json'}", f"{ckpt / 'model.safetensors'}", f"model.{key}")


@pytest.mark.parametrize("model", ["nano", [2, 2, 64]])
def test_a_model_section_that_is_not_an_object_is_refused(ckpt, never_build, model):
    _set_config(ckpt, lambda c: c.update(model=model))
    _refused(ckpt, f"{ckpt / 'config.json'}", "model must be an object")


def test_unknown_and_missing_model_keys_are_named(ckpt, never_build):
    def rename(config):
        config["model"]["n_layers"] = config["model"].pop("n_layer")
        del config["model"]["vocab_size"]

    _set_config(ckpt, rename)
    _refused(ckpt, f"{ckpt / 'config.json'}", "model.n_layers: unknown key", "model.vocab_size: missing")


def test_a_tokenizer_that_is_a_string_is_refused(ckpt, never_build, capsys):
    _set_config(ckpt, lambda c: c.update(tokenizer="abc"))
    _refused(ckpt, f"{ckpt / 'config.json'}", "tokenizer must be an object")
    _play_refuses(ckpt, capsys, f"{ckpt / 'config.json'}", "tokenizer")


@pytest.mark.parametrize("merges", ["ab", {"a": "b"}, [1, 2], ["xé"]])
def test_a_tokenizer_with_bad_merges_is_refused(ckpt, never_build, merges):
    def bpe(config):
        config["tokenizer"] = {"type": "bpe", "chars": config["tokenizer"]["chars"], "merges": merges}

    _set_config(ckpt, bpe)
    _refused(ckpt, f"{ckpt / 'config.json'}", "tokenizer.merges")


def test_a_verifier_with_nan_weights_is_refused(tmp_path, capsys):
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=16)
    path = agents.save_verifier(agents.new_verifier(cfg, tokenizer=tok, device="cpu", seed=0), tmp_path / "v")
    _poison(path / "model.safetensors", "tok_emb.weight", float("nan"))
    names = (f"{path / 'model.safetensors'}", "tok_emb.weight", "NaN")
    _refused(path, *names, load=agents.load_verifier)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "max 1234=", "chosen": "4", "rejected": "3"}\n')
    assert V.main(["eval", "--verifier", str(path), "--pairs", str(pairs)]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in names), err


def test_a_verifier_config_gets_the_same_checks(tmp_path, monkeypatch):
    tok = agents.CharTokenizer()
    cfg = agents.ModelConfig.preset("nano", vocab_size=tok.vocab_size, block_size=16)
    path = agents.save_verifier(agents.new_verifier(cfg, device="cpu", seed=0), tmp_path / "v")
    _forbid_building(monkeypatch)
    _edit_config(path, '"n_layer": 2', '"n_layer": 1000000')
    _refused(path, f"{path / 'config.json'}", "model.n_layer", load=agents.load_verifier)
