"""A random BitNet model of a published shape, as the benchmarks and the conversion tests use it:
BitNet's own generator (utils/generate-dummy-bitnet-model.py of a BitNet tree, which is not part of
this repository) run with an interpreter that has torch, numpy, sentencepiece and BitNet's gguf-py,
on a model directory that may start empty."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

# A sentencepiece tokenizer trained on the interpreter's own standard library (argv[1]: prefix).
TOKENIZER = """
import glob, sys, sysconfig
import sentencepiece as spm
files = sorted(glob.glob(sysconfig.get_paths()["stdlib"] + "/**/*.py", recursive=True))[:400]
spm.SentencePieceTrainer.train(input=files, model_prefix=sys.argv[1], vocab_size=8000, model_type="bpe",
                               input_sentence_size=200000, byte_fallback=True, minloglevel=2)
"""

# The shapes of generate-dummy-bitnet-model.py's --model-size (hidden, intermediate, layers, heads).
SHAPES = {"125M": (768, 3072, 11, 12), "350M": (1024, 3072, 24, 16), "1B": (2048, 3584, 24, 32),
          "1.5B": (1536, 9216, 28, 32), "2.7B": (3072, 7680, 24, 32), "3.8B": (3840, 8192, 24, 32),
          "7B": (4096, 12032, 32, 32), "13B": (5120, 13824, 40, 40), "30B": (6656, 16384, 60, 52),
          "70B": (8192, 24576, 80, 64), "100B": (8192, 45568, 72, 64)}


def model_config(size: str) -> dict:
    """config.json of a BitNet model of the generator's shape `size`."""
    hidden, intermediate, layers, heads = SHAPES[size]
    return {"architectures": ["BitnetForCausalLM"], "vocab_size": 32002, "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": heads}


def dummy_model(model_dir: Path, size: str, python: str, bitnet_src: Path) -> Path:
    """The f16 GGUF of a random model of shape `size` in `model_dir` (which may start empty), made
    by the BitNet tree's generator with `python`. config.json is written every time (the generator
    reads the layer count from it before it applies --model-size); tokenizer and model only when
    absent."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(model_config(size)))
    if not (model_dir / "tokenizer.model").exists():
        subprocess.run([python, "-c", TOKENIZER, str(model_dir / "tokenizer")], check=True)
    f16 = model_dir / f"dummy-{size}.f16.gguf"
    if not f16.exists():
        subprocess.run([python, "utils/generate-dummy-bitnet-model.py", model_dir, "--outfile", f16,
                        "--outtype", "f16", "--model-size", size], cwd=bitnet_src, check=True, stdout=subprocess.DEVNULL)
    return f16
