"""Fixtures: the lab image and labs of test hosts of the suite's own."""

from __future__ import annotations

import os

import pytest

from helpers import ROOT, run

CONTROLLER = ROOT / "inventories" / "controller"


class Lab:
    """A lab of the suite's own (not the one `bin/wf lab` leaves running for the operator), with
    an inventory directory of its own (the lab's group_vars linked in), discovered through its
    own fake Hetzner APIs."""

    def __init__(self, inventory, prefix: str, network: str, subnet: str):
        self.inventory = inventory
        os.symlink(ROOT / "inventories" / "lab" / "group_vars", inventory / "group_vars")
        self._extra = [f"-elab_prefix={prefix}", f"-elab_network={network}", f"-elab_subnet={subnet}",
                       f"-elab_inventory_dir={inventory}"]
        self.prefix = prefix

    def up(self, count: int = 3) -> None:
        """Create hosts 1..count (more hosts join; fewer only leave the fake API's list)."""
        run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/up.yml", *self._extra, f"-elab_host_count={count}")

    def down(self) -> None:
        run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/down.yml", *self._extra, check=False)

    def host(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def __fspath__(self) -> str:
        return str(self.inventory)


def running(lab: Lab):
    """A fixture's lab: up for its tests, down after them."""
    lab.up()
    yield lab
    lab.down()


@pytest.fixture(scope="session")
def lab_image() -> None:
    """Build the lab's base image unless this version of its recipe is already built."""
    run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/image.yml")


@pytest.fixture(scope="session")
def lab(lab_image, tmp_path_factory):
    """A 3-host lab for the site.yml tests."""
    lab = Lab(tmp_path_factory.mktemp("lab-inventory"), "wf-test-", "wrinklefree-test", "10.213.1.0/24")
    yield from running(lab)


@pytest.fixture(scope="module")
def mesh_lab(lab_image, tmp_path_factory):
    """A lab for the WireGuard tests, which add and remove hosts."""
    lab = Lab(tmp_path_factory.mktemp("mesh-inventory"), "wf-wg-", "wrinklefree-wg", "10.213.2.0/24")
    yield from running(lab)


@pytest.fixture(scope="module")
def pool_lab(lab_image, tmp_path_factory):
    """A lab whose first host is the SkyPilot controller and all three the node pool."""
    lab = Lab(tmp_path_factory.mktemp("pool-inventory"), "wf-pool-", "wrinklefree-pool", "10.213.3.0/24")
    (lab.inventory / "controller.yml").write_text(
        f"all:\n  children:\n    sky_controller:\n      hosts:\n        {lab.host(1)}:\n")
    yield from running(lab)


@pytest.fixture(scope="session")
def bitnet_lab(lab_image, tmp_path_factory):
    """A lab for the BitNet and runbook tests, which rebuild, break and restore the servers
    (test_bitnet.py converges it first)."""
    lab = Lab(tmp_path_factory.mktemp("bitnet-inventory"), "wf-bitnet-", "wrinklefree-bitnet", "10.213.5.0/24")
    yield from running(lab)


@pytest.fixture(scope="module")
def fault_lab(lab_image, tmp_path_factory):
    """A lab for the fault-injection tests, which kill hosts and connections and break apt."""
    lab = Lab(tmp_path_factory.mktemp("fault-inventory"), "wf-fault-", "wrinklefree-fault", "10.213.6.0/24")
    yield from running(lab)
