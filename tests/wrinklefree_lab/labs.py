"""The suite's labs of test hosts, for the tests' fixtures (conftest.py) and the benchmarks:
a Lab (hosts made by playbooks/lab/up.yml, discovered through their own fake Hetzner APIs) and
the record of each lab's phases for the run's closing summary."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import time
from pathlib import Path

from wrinklefree_lab.helpers import ROOT, run

CONTROLLER = ROOT / "inventories" / "controller"


class Lab:
    """A lab of the suite's own (not the one `bin/wf lab` leaves running for the operator), with
    an inventory directory of its own (the lab's group_vars linked in), discovered through its
    own fake Hetzner APIs."""

    def __init__(self, inventory, prefix: str, network: str, subnet: str, edge: int = 0, vms: int = 0,
                 shared_facts: bool = False, project: str = ""):
        """`edge`: how many of the first hosts run the front door; `vms`: hosts that play cloud VMs
        (no play touches them; see playbooks/lab/vars.yml); `shared_facts`: the lab's playbook
        runs share one fact cache (`facts`, as ansible.cfg's cache does for `bin/wf lab`), so a
        run skips gathering what an earlier one gathered; `project`: the Cloud servers carry the
        label managed-by=project (playbooks/provision.yml may scale them down)."""
        self.inventory = inventory
        self.facts = inventory / ".facts" if shared_facts else None
        os.symlink(ROOT / "inventories" / "lab" / "group_vars", inventory / "group_vars")
        self._extra = [f"-elab_prefix={prefix}", f"-elab_network={network}", f"-elab_subnet={subnet}",
                       f"-elab_inventory_dir={inventory}", f"-elab_edge_count={edge}", f"-elab_vm_count={vms}",
                       f"-elab_project={project}"]
        self._subnet = ipaddress.ip_network(subnet)
        self.count = 3
        # WF_LAB_CPUINFO: every host shows that recorded /proc/cpuinfo (tests/lab/cpuinfo/), so
        # the suite runs as it would on a machine with fewer instruction sets than this one.
        if os.environ.get("WF_LAB_CPUINFO"):
            self._extra.append(f"-elab_cpuinfo={Path(os.environ['WF_LAB_CPUINFO']).resolve()}")
        self.prefix = prefix

    def up(self, count: int = 3) -> None:
        """Create hosts 1..count (more hosts join; fewer only leave the fake API's list)."""
        self.count = count
        run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/up.yml", *self._extra, f"-elab_host_count={count}")

    def down(self) -> None:
        run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/down.yml", *self._extra, check=False)

    def host(self, index: int) -> str:
        return f"{self.prefix}{index}"

    def hosts(self) -> list[str]:
        return [self.host(index) for index in range(1, self.count + 1)]

    def address(self, index: int) -> str:
        return str(self._subnet[10 + index])

    def vm_address(self, index: int) -> str:
        return str(self._subnet[100 + index])

    @property
    def frontdoor_key(self) -> str:
        """The key the front door's clients send (frontdoor_api_keys in the lab's group_vars)."""
        return (self.inventory / ".state" / "frontdoor-api-key").read_text().strip()

    def __fspath__(self) -> str:
        return str(self.inventory)


# Each lab's lifecycle, for the summary at the end of the run: [worker, lab, phase, start, seconds].
# Under pytest-xdist the workers hand theirs to the controller (pytest_testnodedown).
LIFECYCLE: list[list] = []


@contextlib.contextmanager
def phase(name: str, what: str):
    """Time one phase of a lab's life (up, a shared run, in use, down) for the closing summary."""
    start = time.time()
    try:
        yield
    finally:
        LIFECYCLE.append([os.environ.get("PYTEST_XDIST_WORKER", "-"), name, what, start, time.time() - start])


def running(lab: Lab):
    """A fixture's lab: up for its tests, down after them. Whatever a run that was killed left
    under the lab's network name goes first, so no test starts on an old lab's hosts."""
    with phase(lab.prefix, "up"):
        lab.down()
        lab.up()
    with phase(lab.prefix, "in use"):
        yield lab
    with phase(lab.prefix, "down"):
        lab.down()
