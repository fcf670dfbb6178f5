"""A tiny random Hugging Face causal LM and its tokenizer, built offline, saved as an HF model directory.

    python -m selfplay.tiny_model --arch llama|gpt2 --out DIR [--hidden 64] [--layers 2] [--vocab 512]
    python -m selfplay.tiny_model --arch llama --out DIR --gguf FILE.gguf   # and the same model as GGUF

The tokenizer is a byte-level BPE (one token per digit, as Qwen2's and SmolLM2's) trained here on text
that covers every built-in game's prompts and moves (random games) and every reward environment's tasks
with their expert answers, with `<|bos|>`, `<|eos|>` and `<|pad|>` as special tokens; the model's
weights are random (`--seed`). The directory is what `from_pretrained` reads (safetensors weights,
`config.json`, the tokenizer files): the stand-in for a real checkpoint (SmolLM2, Qwen2.5) in tests and
on machines without a model hub. Needs the `hf` extra (`pip install -e '.[hf]'`). The directory is
written whole or not at all. Its tokenizer carries a chat template (ChatML's shape, with its own special
tokens). `--gguf` also writes the Llama as llama.cpp's converter would (`gguf` package: the `smollm`
extra), its matrices quantized to Q4_1 as SmolLM2's file is: the stand-in for a real GGUF file.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.numpy import load_file

import envs
from envs.reward import run_episode, sample_tasks
from selfplay.io import cannot_write

SPECIAL = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>"}
CHAT_TEMPLATE = (  # ChatML's shape (SmolLM2's, Qwen2's) with this tokenizer's special tokens
    "{% for m in messages %}<|bos|>{{ m['role'] }}\n{{ m['content'] }}<|eos|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}"
)
ARCHS = ("llama", "gpt2")


def corpus(games: int = 40, tasks: int = 200, seed: int = 0) -> Iterator[str]:
    """Texts a policy of this project reads and writes: each game's prompts and legal moves along random
    games, and each reward environment's prompts and expert completions."""
    rng = random.Random(seed)
    for name in envs.names("game"):
        game = envs.make(name)
        for _ in range(games):
            state = game.new_initial_state()
            while not state.is_terminal():
                yield state.prompt()
                moves = state.legal_texts()
                yield from moves  # each alone, as the policy scores it: a move can merge into one token
                state.apply_action(state.text_to_action(rng.choice(moves)))
            yield state.prompt()
    for name in envs.names("reward"):
        env = envs.make(name)
        for task in sample_tasks(env, tasks, seed=seed):
            for turn in run_episode(env, task).turns:
                yield turn["prompt"] + turn["completion"]


def train_tokenizer(vocab_size: int, texts: Iterator[str]):
    """A byte-level BPE (every string encodes: no unknown token) as a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # the `hf` extra
    from transformers import PreTrainedTokenizerFast  # the `hf` extra

    tok = Tokenizer(models.BPE())
    # one token per digit, as Llama 2's, Qwen2's and SmolLM2's tokenizers do: numbers keep their digits
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=CHAT_TEMPLATE, **SPECIAL)


def model_config(arch: str, tokenizer, *, hidden: int, layers: int, heads: int, kv_heads: int, context: int):
    from transformers import GPT2Config, LlamaConfig  # the `hf` extra

    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in SPECIAL.items()}
    common = dict(
        vocab_size=len(tokenizer),
        bos_token_id=ids["bos_token"],
        eos_token_id=ids["eos_token"],
        pad_token_id=ids["pad_token"],
        tie_word_embeddings=False,
    )
    if arch == "llama":
        return LlamaConfig(
            hidden_size=hidden,
            intermediate_size=4 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            max_position_embeddings=context,
            **common,
        )
    return GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=context, **common)


def build(
    arch: str,
    out: str | os.PathLike,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    context: int = 512,
    vocab_size: int = 512,
    seed: int = 0,
) -> Path:
    """Write the tiny model and its tokenizer to `out` (which must not exist, or be empty); its path."""
    if arch not in ARCHS:
        raise ValueError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory: choose a new one")
    if why := cannot_write(out.parent):  # the model is made beside it, then renamed
        raise ValueError(f"--out {out}: {why}")
    from transformers import AutoModelForCausalLM  # the `hf` extra

    tokenizer = train_tokenizer(vocab_size, corpus(seed=seed))
    cfg = model_config(
        arch, tokenizer, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, context=context
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        tmp.chmod(0o777 & ~mask)  # mkdtemp's 0700 is for the temporary name only
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_gguf(model_dir: str | os.PathLike, out: str | os.PathLike, *, quantize: bool = True) -> Path:
    """The Llama directory `model_dir` (as `build` writes it) as a GGUF file at `out`, as llama.cpp's
    converter writes one: GGUF tensor names, the query and key rows permuted as llama.cpp lays them out,
    the tokenizer's vocabulary, merges, special tokens and chat template as metadata; matrices quantized
    to Q4_1 with `quantize` (as SmolLM2's file), the rest float32."""

    import gguf  # the `smollm` extra

    src, out = Path(model_dir), Path(out)
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") != "llama":
        raise ValueError(f"{src}: a {cfg.get('model_type')} model; GGUF files are written for llama here")
    tokenizer = json.loads((src / "tokenizer.json").read_text())
    chat = json.loads((src / "tokenizer_config.json").read_text()).get("chat_template") or CHAT_TEMPLATE
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name("selfplay tiny llama")
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_vocab_size(cfg["vocab_size"])
    tokens = sorted(tokenizer["model"]["vocab"], key=tokenizer["model"]["vocab"].get)
    special = {t["id"] for t in tokenizer["added_tokens"]}
    w.add_tokenizer_model("gpt2")  # byte-level BPE
    w.add_token_list(tokens)
    w.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3: control
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]])
    w.add_bos_token_id(cfg["bos_token_id"])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    w.add_chat_template(chat)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg["num_hidden_layers"])
    for key, value in load_file(src / "model.safetensors").items():
        value = value.astype("float32")
        if key.endswith(("q_proj.weight", "k_proj.weight")):  # llama.cpp's rotary layout of the rows
            n = kv_heads if key.endswith("k_proj.weight") else heads
            value = value.reshape(n, 2, -1, value.shape[1]).swapaxes(1, 2).reshape(value.shape)
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if quantize and value.ndim == 2 and value.shape[1] % 32 == 0 and name != "token_embd.weight":
            q4 = gguf.GGMLQuantizationType.Q4_1
            packed = gguf.quants.quantize(value, q4)  # (rows, bytes a row)
            w.add_tensor(name, packed, raw_shape=packed.shape, raw_dtype=q4)
        else:
            w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=ARCHS, required=True)
    p.add_argument("--out", required=True, help="the model directory to write (new or empty)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2, help="key/value heads (llama)")
    p.add_argument("--context", type=int, default=512, help="positions the model can read")
    p.add_argument("--vocab", type=int, default=512, help="BPE vocabulary size, special tokens included")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gguf", metavar="FILE", help="also write the model as a GGUF file (llama; Q4_1 matrices)"
    )
    args = p.parse_args(argv)
    try:
        out = build(
            args.arch,
            args.out,
            hidden=args.hidden,
            layers=args.layers,
            heads=args.heads,
            kv_heads=args.kv_heads,
            context=args.context,
            vocab_size=args.vocab,
            seed=args.seed,
        )
    except (ValueError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(
            f"error: {e.name or e}: the Hugging Face backbone needs pip install -e '.[hf]'", file=sys.stderr
        )
        return 2
    n = sum(1 for _ in out.iterdir())
    shape = f"{args.hidden} wide, {args.layers} layers"
    print(f"wrote {out}: a random {args.arch} model ({shape}) and its tokenizer, {n} files")
    if args.gguf:
        try:
            print(f"wrote {write_gguf(out, args.gguf)}: the same model as GGUF (Q4_1 matrices)")
        except (ValueError, ImportError) as e:
            print(f"error: --gguf: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
