"""The random BitNet model the benchmarks generate (wrinklefree_lab.dummy_model), from an empty
model directory as a new user starts: opt-in, as it needs a BitNet tree (WF_BITNET_SRC) and an
interpreter with torch, numpy, sentencepiece and BitNet's gguf-py (WF_BITNET_PYTHON)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from wrinklefree_lab.dummy_model import SHAPES, dummy_model, model_config


@pytest.mark.parametrize("size", SHAPES)
def test_the_config_carries_the_shape_the_generator_reads_first(size):
    """BitNet's generator takes the layer count (and builds its tensor map) from config.json before
    it applies --model-size: the config must already be of that size."""
    config = json.loads(json.dumps(model_config(size)))
    hidden, intermediate, layers, heads = SHAPES[size]
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (layers, hidden, intermediate)
    assert config["num_attention_heads"] == config["num_key_value_heads"] == heads
    assert config["architectures"] == ["BitnetForCausalLM"] and hidden % heads == 0


@pytest.mark.skipif(not (os.environ.get("WF_BITNET_SRC") and os.environ.get("WF_BITNET_PYTHON")),
                    reason="set WF_BITNET_SRC (a BitNet tree) and WF_BITNET_PYTHON (torch, sentencepiece, gguf-py)")
def test_a_model_is_generated_from_an_empty_directory(tmp_path):
    model_dir = tmp_path / "empty"
    f16 = dummy_model(model_dir, "125M", os.environ["WF_BITNET_PYTHON"], Path(os.environ["WF_BITNET_SRC"]))
    with f16.open("rb") as handle:
        magic, version = struct.unpack("<4sI", handle.read(8))
    assert magic == b"GGUF" and version >= 2
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "dummy-125M.f16.gguf", "tokenizer.model",
                                                            "tokenizer.vocab"]
    # Made once: a second call with the files in place generates nothing.
    mtime = f16.stat().st_mtime_ns
    assert dummy_model(model_dir, "125M", os.environ["WF_BITNET_PYTHON"], Path(os.environ["WF_BITNET_SRC"])) == f16
    assert f16.stat().st_mtime_ns == mtime
