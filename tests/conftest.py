"""Fixtures: the lab image and a lab of test hosts of the suite's own."""

from __future__ import annotations

import os

import pytest

from helpers import ROOT, run

CONTROLLER = ROOT / "inventories" / "controller"

# The suite's lab is separate from the one `bin/wf lab` leaves running for the operator.
TEST_LAB = {
    "lab_prefix": "wf-test-",
    "lab_network": "wrinklefree-test",
    "lab_subnet": "10.213.1.0/24",
}


@pytest.fixture(scope="session")
def lab_image() -> None:
    """Build the lab's base image unless this version of its recipe is already built."""
    run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/image.yml")


@pytest.fixture(scope="session")
def lab(lab_image, tmp_path_factory):
    """A 3-host lab with an inventory directory of its own (the lab's group_vars linked in),
    discovered through its own fake Hetzner APIs."""
    inventory = tmp_path_factory.mktemp("lab-inventory")
    os.symlink(ROOT / "inventories" / "lab" / "group_vars", inventory / "group_vars")
    extra = [f"-e{k}={v}" for k, v in TEST_LAB.items()] + [f"-elab_inventory_dir={inventory}"]
    run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/up.yml", *extra)
    yield inventory
    run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/down.yml", *extra, check=False)
