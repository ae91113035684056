"""Training stages run as SkyPilot runs them, with a real trainer: the rendered task's setup and
run under bash on a simulated node (a fresh venv with PyTorch's CPU build and W&B offline, the
bucket mount a directory, SkyPilot's SKYPILOT_* node variables set as it sets them) and the
stand-in trainer of tests/fixtures/trainer, an FSDP loop on gloo. Stage 1 on one process, stage
1.9 on 1 node x 2 processes, stage 2 on 2 nodes x 1 process over loopback, killed as a spot
preemption kills it and started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from wrinklefree_lab.helpers import ROOT, render, run

TRAINER = ROOT / "tests" / "fixtures" / "trainer"
MODEL = "1bitLLM/bitnet_b1_58-large"


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> dict:
    """The node's environment: a venv of pyproject.toml's train-node extra (pinned by the
    fixture's node-constraints.txt) on PATH, pip pointed at a wheelhouse that holds the trainer's
    wheel (the node's package index), W&B offline."""
    root = tmp_path_factory.mktemp("train-node")
    venv, wheels = root / "venv", root / "wheels"
    run("python3", "-m", "venv", venv)
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train-node"]
    run(venv / "bin" / "pip", "install", "-q", "-c", TRAINER / "node-constraints.txt", *extra)
    run(venv / "bin" / "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels, TRAINER)
    path = f"{venv / 'bin'}:{os.environ['PATH']}"
    return {"PATH": path, "HOME": str(root), "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WF_STEPS": "30"}


def stage(tmp_path, node: dict, name: str) -> dict:
    """The stage's rendered job, its envs as the node sees them (the bucket at tmp_path/bucket)."""
    rendered = tmp_path / f"render-{name}"
    rendered.mkdir()
    (spec,) = render(rendered, "train.yaml.j2", [{
        "train_stage": name, "train_scale": "s", "train_model": MODEL, "train_trainer": "wf-standin-trainer==0.1.0",
        "train_module": "wf_standin_trainer"}])
    envs = {k: v.replace("/checkpoints", str(tmp_path / "bucket")) for k, v in spec["envs"].items()}
    return {"spec": spec, "env": {**node, **envs, "WANDB_DIR": str(tmp_path)}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(job: dict, nodes: int, per_node: int, rank: int, port: int, **env) -> subprocess.Popen:
    """The run on one node."""
    node_env = {**job["env"], "SKYPILOT_NUM_NODES": str(nodes), "SKYPILOT_NUM_GPUS_PER_NODE": str(per_node),
                "SKYPILOT_NODE_RANK": str(rank), "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * nodes),
                "MASTER_PORT": str(port), **env}
    return subprocess.Popen(["bash", "-c", job["spec"]["run"]], env=node_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def preempt(proc: subprocess.Popen) -> None:
    """SIGKILL the node's run and everything under it, as a spot VM's end does (torchrun starts
    its workers in sessions of their own, out of reach of the run's process group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the field after the state
        except OSError:
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [proc.pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def finish(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-4000:]


def meta(directory: Path) -> dict:
    return json.loads((directory / "meta.json").read_text())


def wandb_runs(tmp_path) -> list[str]:
    """The run id of each W&B offline run (offline-run-DATE_TIME-ID)."""
    return sorted(p.name.split("-", 3)[3] for p in (tmp_path / "wandb").glob("offline-run-*"))


def test_stages_chain_train_with_fsdp_and_resume_after_a_preemption(tmp_path, node):
    # Stage 1 (CPU, one process): setup installs the pinned trainer from the node's index.
    first = stage(tmp_path, node, "1")
    subprocess.run(["bash", "-c", first["spec"]["setup"]], env=first["env"], check=True)
    finish([start(first, 1, 0, 0, free_port())])
    out1 = Path(first["env"]["OUTPUT_DIR"]) / "final"
    m1 = meta(out1)
    assert m1["stage"] == "1" and m1["world_size"] == 1 and not m1["fsdp"] and m1["started"] == {"from": "init"}
    assert m1["losses"][-1] < m1["losses"][0] / 2, m1["losses"]

    # Stage 1.9, 1 node x 2 processes: torchrun, FSDP over gloo, from stage 1's final/.
    distill = stage(tmp_path, node, "1.9")
    finish([start(distill, 1, 2, 0, free_port())])
    m19 = meta(Path(distill["env"]["OUTPUT_DIR"]) / "final")
    assert m19["world_size"] == 2 and m19["fsdp"] and m19["input"]["stage"] == "1" and m19["input"]["step"] == 30
    assert m19["losses"][0] < m1["losses"][0]  # it started from stage 1's weights, not from scratch

    # Stage 2, 2 nodes x 1 process over loopback, slowed down, preempted after its first checkpoint.
    pretrain = stage(tmp_path, node, "2")
    output = Path(pretrain["env"]["OUTPUT_DIR"])
    port = free_port()
    procs = [start(pretrain, 2, 1, rank, port, WF_STEP_SECONDS="0.3") for rank in (0, 1)]
    deadline = time.time() + 240
    while not (output / "checkpoint-10").is_dir():
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate()[0][-3000:] for p in procs]
        time.sleep(0.2)
    for proc in procs:
        preempt(proc)
    assert not (output / "final").exists()
    port = free_port()
    finish([start(pretrain, 2, 1, rank, port) for rank in (0, 1)])
    m2 = meta(output / "final")
    assert m2["world_size"] == 2 and m2["fsdp"] and m2["input"]["stage"] == "1.9"
    assert m2["started"]["from"] == "resume" and Path(m2["started"]["checkpoint"]).name.startswith("checkpoint-")
    resumed_at = int(Path(m2["started"]["checkpoint"]).name.split("-")[1])
    assert resumed_at >= 10 and len(m2["losses"]) == 30 - resumed_at
    # One W&B run id for the stage, in both attempts (stages 1 and 1.9 have their own).
    assert m2["wandb_run_id"] == pretrain["env"]["WANDB_RUN_ID"] == "1bitllm-bitnet-b1-58-large-stage-continued-pretrain"
    assert wandb_runs(tmp_path).count(m2["wandb_run_id"]) == 2, wandb_runs(tmp_path)

    # Run again (a recovery after the stage finished): nothing to do, final/ untouched.
    before = (output / "final" / "model.pt").stat().st_mtime_ns
    port = free_port()
    finish([start(pretrain, 2, 1, rank, port) for rank in (0, 1)])
    assert (output / "final" / "model.pt").stat().st_mtime_ns == before
