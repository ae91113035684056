"""From a training run's last checkpoint to the fleet, on the side lab (converged with the node pool,
as test_node_pool uses it): playbooks/runbooks/publish-model.yml converts the checkpoint with BitNet's converter
(the fixture tree's, or with WF_BITNET_SRC the real generator's GGUF as bench/bitnet.py makes it),
quantizes it with the fleet's own release on a base host, publishes it with its sha256 in the
lab's model mirror and lists it; the rolling-upgrade runbook then takes it to every base host,
where llama-server loads it (the role checks the published digest on download), and serve.yml
to a burst replica, run on the side lab's VM host as SkyPilot would."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from wrinklefree_lab import cloud_vm
from wrinklefree_lab.dummy_model import dummy_model, model_config
from wrinklefree_lab.helpers import ROOT, converge, fact, http, output, playbook

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("side")]

KEY = "burst-key-published-0123456789"


def source(tmp_path) -> dict:
    """What publish-model.yml starts from: a checkpoint directory in the shape bench/bitnet.py
    generates, for the fixture tree's converter; with WF_BITNET_SRC the real generator's GGUF
    (WF_BITNET_PYTHON: an interpreter with its requirements)."""
    if os.environ.get("WF_BITNET_SRC"):
        src = Path(os.environ["WF_BITNET_SRC"])
        return {"publish_source": str(dummy_model(tmp_path / "model", "125M", os.environ.get("WF_BITNET_PYTHON", sys.executable), src))}
    final = tmp_path / "stage-3" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text(json.dumps(model_config("125M")))
    return {"publish_source": str(final), "publish_bitnet_src": str(ROOT / "tests" / "fixtures" / "bitnet"),
            "publish_python": sys.executable}


@pytest.fixture(scope="module")
def served(side_lab, pool_converged):
    """The side lab converged with the node pool (test_node_pool's run; alone, this module's own
    from bare hosts), every host in the mesh and serving."""
    return side_lab


def test_a_checkpoint_is_published_listed_and_served_by_the_fleet(served, tmp_path):
    side_lab = served
    mirror = side_lab.inventory / ".state" / "mirror" / "models"
    models_file = tmp_path / "models.yml"
    request = {**source(tmp_path), "publish_name": "published", "publish_port": 8081, "publish_dir": str(mirror),
               "publish_url": "file:///srv/mirror/models", "publish_models_file": str(models_file)}

    refused = playbook("playbooks/runbooks/publish-model.yml", side_lab, extravars={**request, "publish_port": 8080})
    assert refused.rc != 0 and "publish_port must be 1024-65535 and no other model's (8080), got 8080" in output(refused)
    assert not (mirror / "published.gguf").exists() and not models_file.exists()

    converge(side_lab, "playbooks/runbooks/publish-model.yml", extravars=request)
    digest = hashlib.sha256((mirror / "published.gguf").read_bytes()).hexdigest()
    assert (mirror / "published.gguf.sha256").read_text() == f"{digest}  published.gguf\n"
    models = yaml.safe_load(models_file.read_text())["bitnet_models"]
    assert [m["name"] for m in models] == ["tiny", "published"]
    assert models[1] == {"name": "published", "url": "file:///srv/mirror/models/published.gguf", "sha256": digest, "port": 8081}

    converge(side_lab, "playbooks/runbooks/bitnet-upgrade.yml", extravars={"upgrade_models": models})
    for host in side_lab.hosts():
        assert http(host, fact(host)["bind"], "/health", port=8081) == {"status": "ok"}, host

    # The burst layer with it: serve.yml's spec for the published model, run by the side lab's
    # untouched VM host as SkyPilot would start a replica (the setup checks the digest).
    spec = cloud_vm.burst_spec(side_lab.inventory, tmp_path, KEY, side_lab.vm_address(1), serve_model="published")
    assert {k: spec["envs"][k] for k in ("MODEL_NAME", "MODEL_URL", "MODEL_SHA256")} == {
        "MODEL_NAME": "published", "MODEL_URL": models[1]["url"], "MODEL_SHA256": digest}
    vm = cloud_vm.CloudVM(side_lab.inventory, side_lab.vm_address(1))
    try:
        cloud_vm.start_replica(vm, spec, KEY)
        assert "/models/published.gguf " in vm.ssh("pgrep -a llama-server").stdout
    finally:
        vm.kill("sky-run")
