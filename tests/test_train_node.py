"""Training stages run as SkyPilot runs them, with a real trainer, on a fresh lab host playing the
job's nodes (the side lab's VM host, which no play touches): the node prepared as a GPU image
comes (PyTorch's CPU build and W&B in a venv, pip pointed at the node's package index, W&B
offline, the bucket mounted at /checkpoints), then each rendered stage's setup and run over SSH
with SkyPilot's SKYPILOT_* node variables, the run in a transient unit as SkyPilot's job runner
starts it. The trainer is the stand-in of tests/fixtures/trainer, an FSDP loop on gloo. Stage 1
on one process, stage 1.9 on 1 node x 2 processes, stage 2 on 2 nodes x 1 process over
loopback, killed as a spot preemption kills it and started again."""

from __future__ import annotations

import itertools
import json
import shutil
import time
import tomllib

import pytest

from wrinklefree_lab.cloud_vm import CloudVM
from wrinklefree_lab.helpers import ROOT, download_wheels, render, run

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("side")]

TRAINER = ROOT / "tests" / "fixtures" / "trainer"
MODEL = "1bitLLM/bitnet_b1_58-large"
# What the node's image has: its Python (with torch) first on PATH, pip reading the node's index.
IMAGE = """set -eu
python3 -m venv --without-pip /opt/node
set -- ~/wheels/pip-*.whl  # pip runs from its wheel (a zip: no glob reaches into it)
/opt/node/bin/python "$1/pip" install -q --no-index --find-links ~/wheels -c ~/wheels/constraints.txt pip {packages}
for tool in python torchrun; do printf '#!/bin/sh\\nexec /opt/node/bin/%s "$@"\\n' "$tool" > /usr/local/bin/$tool; done
chmod 755 /usr/local/bin/python /usr/local/bin/torchrun
mkdir -p /etc/xdg/pip /checkpoints
printf '[global]\\nno-index = true\\nfind-links = /root/wheels\\n' > /etc/xdg/pip/pip.conf
"""
# Each node's run is a unit of its own name: a run's helpers (W&B's service) may outlive it a while.
ATTEMPTS = itertools.count(1)
FREE_PORT = "python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'"


@pytest.fixture(scope="module")
def node(side_lab, tmp_path_factory) -> CloudVM:
    """The side lab's VM host, made a node: the wheels of pyproject.toml's train-node extra (pinned
    by the fixture's node-constraints.txt) and of the stand-in trainer copied to it (lab hosts
    have no PyPI) as its package index, then IMAGE."""
    wheels, source = tmp_path_factory.mktemp("node-wheels"), tmp_path_factory.mktemp("trainer") / "trainer"
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train-node"]
    constraints = TRAINER / "node-constraints.txt"
    download_wheels(wheels, "-c", constraints, "pip", *extra)
    shutil.copytree(TRAINER, source)  # pip builds in the source tree: not in the repository's
    run(".venv/bin/pip", "wheel", "-q", "--no-deps", "-w", wheels, source)
    shutil.copy(constraints, wheels / "constraints.txt")
    vm = CloudVM(side_lab.inventory, side_lab.vm_address(1))
    vm.copy(wheels, "wheels")
    vm.ssh("bash -s", IMAGE.format(packages=" ".join(extra)))
    return vm


def stage(tmp_path, name: str) -> dict:
    """The stage's job as the train role renders it."""
    rendered = tmp_path / f"render-{name}"
    rendered.mkdir()
    (spec,) = render(rendered, "train.yaml.j2", [{
        "train_stage": name, "train_scale": "s", "train_model": MODEL, "train_trainer": "wf-standin-trainer==0.1.0",
        "train_module": "wf_standin_trainer"}])
    return spec


def nodes(vm: CloudVM, spec: dict, count: int, per_node: int, **extra) -> list[str]:
    """The run started on each of `count` nodes (all on the VM host, over loopback) as SkyPilot
    starts it, with SKYPILOT_* as it sets them and the rendezvous on a port free there (a killed
    run's may linger); their units."""
    port = vm.ssh(FREE_PORT).stdout.strip()
    image = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WF_STEPS": "30", "MASTER_PORT": port, **extra}
    units = [f"sky-{spec['name']}-{next(ATTEMPTS)}" for _ in range(count)]
    for rank, unit in enumerate(units):
        vm.start(spec, {**image, "SKYPILOT_NUM_NODES": str(count), "SKYPILOT_NUM_GPUS_PER_NODE": str(per_node),
                        "SKYPILOT_NODE_RANK": str(rank), "SKYPILOT_NODE_IPS": "\n".join(["127.0.0.1"] * count)}, unit)
    return units


def finish(vm: CloudVM, units: list[str]) -> None:
    for unit in units:
        rc, log = vm.wait(unit)
        assert rc == 0, log


def meta(vm: CloudVM, directory: str) -> dict:
    return json.loads(vm.ssh(f"cat {directory}/meta.json").stdout)


def test_stages_chain_train_with_fsdp_and_resume_after_a_preemption(tmp_path, node):
    # Stage 1 (CPU, one process): the setup installs the pinned trainer from the node's index.
    first = stage(tmp_path, "1")
    setup = node.setup(first, {})
    assert setup.returncode == 0, setup.stdout + setup.stderr
    finish(node, nodes(node, first, 1, 0))
    m1 = meta(node, first["envs"]["OUTPUT_DIR"] + "/final")
    assert m1["stage"] == "1" and m1["world_size"] == 1 and not m1["fsdp"] and m1["started"] == {"from": "init"}
    assert m1["losses"][-1] < m1["losses"][0] / 2, m1["losses"]  # it trains

    # Stage 1.9, 1 node x 2 processes: torchrun, FSDP over gloo, from stage 1's final/.
    distill = stage(tmp_path, "1.9")
    finish(node, nodes(node, distill, 1, 2))
    m19 = meta(node, distill["envs"]["OUTPUT_DIR"] + "/final")
    assert m19["world_size"] == 2 and m19["fsdp"] and m19["input"]["stage"] == "1" and m19["input"]["step"] == 30
    assert m19["losses"][0] < m1["losses"][0]  # it started from stage 1's weights, not from scratch

    # Stage 2, 2 nodes x 1 process over loopback, slowed down, preempted after its first checkpoint.
    pretrain = stage(tmp_path, "2")
    output = pretrain["envs"]["OUTPUT_DIR"]
    units = nodes(node, pretrain, 2, 1, WF_STEP_SECONDS="0.3")
    deadline = time.time() + 300
    while node.ssh(f"test -d {output}/checkpoint-10", check=False).returncode:
        assert time.time() < deadline, [node.wait(unit, 0)[1] for unit in units]
        time.sleep(0.5)
    node.kill(*units)
    assert [node.wait(unit, 0)[0] for unit in units] == [-1, -1]  # killed: no exit status
    assert node.ssh(f"test -e {output}/final", check=False).returncode != 0
    finish(node, nodes(node, pretrain, 2, 1))
    m2 = meta(node, output + "/final")
    assert m2["world_size"] == 2 and m2["fsdp"] and m2["input"]["stage"] == "1.9"
    resumed = m2["started"]["checkpoint"].rsplit("/", 1)[1]
    assert m2["started"]["from"] == "resume" and resumed.startswith("checkpoint-"), m2["started"]
    assert int(resumed.split("-")[1]) >= 10 and len(m2["losses"]) == 30 - int(resumed.split("-")[1])
    # One W&B run id for the stage, in both attempts (stages 1 and 1.9 have their own).
    runs = node.ssh("ls ~/sky_workdir/wandb").stdout.split()
    assert m2["wandb_run_id"] == pretrain["envs"]["WANDB_RUN_ID"] == "1bitllm-bitnet-b1-58-large-stage-continued-pretrain"
    assert sum(r.startswith("offline-run-") and r.split("-", 3)[3] == m2["wandb_run_id"] for r in runs) == 2, runs

    # Started again (a recovery after the stage finished): nothing to do, final/ untouched.
    before = node.ssh(f"stat -c %Y.%s {output}/final/model.pt").stdout
    finish(node, nodes(node, pretrain, 2, 1))
    assert node.ssh(f"stat -c %Y.%s {output}/final/model.pt").stdout == before
