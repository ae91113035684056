"""Fixtures: the lab image and labs of test hosts of the suite's own."""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

from wrinklefree_lab.helpers import FLEET_PREFIX, FLEET_PROJECT, NODE_POOL_PLAYBOOK, ROOT, SIDE_PREFIX, download_wheels, env, output, playbook, run
from wrinklefree_lab.labs import CONTROLLER, LIFECYCLE, Lab, phase, running

def _lab_of_module() -> dict[str, str]:
    """Test module (as in a node id) -> the lab it uses, from its `xdist_group` mark, read from
    the source: the controller of a parallel run schedules node ids and collects nothing."""
    marks = {path: re.search(r'^pytestmark = .*xdist_group\("(\w+)"\)', path.read_text(), re.M)
             for path in (ROOT / "tests").glob("test_*.py")}
    return {f"tests/{path.name}": mark.group(1) for path, mark in marks.items() if mark}


class LabScheduling(LoadScopeScheduling):
    """pytest-xdist's scheduling by scope, where a scope is a lab: every test of the modules that
    share a lab goes to one worker, in file order; any other test is a scope of its own.
    (xdist's own `--dist loadgroup` suffixes node ids, which pytest 9 no longer lets it do.)"""

    def __init__(self, config, log=None):
        super().__init__(config, log)
        self._labs = _lab_of_module()

    def _split_scope(self, nodeid: str) -> str:
        return self._labs.get(nodeid.split("::", 1)[0], nodeid)

    def _assign_work_unit(self, node) -> None:
        """The labs first (xdist orders scopes by size), then Molecule's scenarios (minutes each),
        then the tests of seconds: a scenario handed out last keeps one worker busy while the
        other has nothing left to do."""
        if self.workqueue and next(iter(self.workqueue)) not in self._labs.values():
            for scope in [s for s in self.workqueue if s.startswith("tests/test_molecule.py::")][::-1]:
                self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)


def pytest_xdist_make_scheduler(config, log):
    return LabScheduling(config, log)


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["wf_lifecycle"] = json.dumps(LIFECYCLE)


def pytest_testnodedown(node, error):
    LIFECYCLE.extend(json.loads(node.workeroutput.get("wf_lifecycle", "[]")) if hasattr(node, "workeroutput") else [])


def pytest_terminal_summary(terminalreporter):
    """Where the time went: each lab's phases, then the whole run's wall time (bin/wf's setup
    included), so a slower suite shows in the last lines anyone reads."""
    # Each module's time (setup, call and teardown of its tests): the lab modules' sum is their
    # worker's chain, which the slowest-tests list alone does not show. Molecule: each scenario.
    by_module: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(getattr(report, "duration", None), float) and getattr(report, "nodeid", ""):
                module = report.nodeid if "test_molecule.py" in report.nodeid else report.nodeid.split("::", 1)[0]
                by_module[module] = by_module.get(module, 0.0) + report.duration
    slow = sorted(((seconds, module) for module, seconds in by_module.items() if seconds >= 10), reverse=True)
    if slow:
        labs = _lab_of_module()
        terminalreporter.write_sep("=", "time by module (s, setup + call + teardown)")
        for seconds, module in slow:
            terminalreporter.write_line(f"{seconds:8.1f}  {labs.get(module, '-'):<6} {module}")
    if LIFECYCLE:
        origin = min(entry[3] for entry in LIFECYCLE)
        terminalreporter.write_sep("=", "lab lifecycles (s from the first lab's start)")
        for worker, name, what, start, seconds in sorted(LIFECYCLE, key=lambda entry: entry[3]):
            terminalreporter.write_line(f"{worker:<4} {name:<12} {what:<22} at {start - origin:7.1f}  took {seconds:7.1f}")
    if os.environ.get("WF_STARTED", "").isdigit():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "unknown CPU")
        terminalreporter.write_sep("=", f"wall time since bin/wf started: {time.time() - int(os.environ['WF_STARTED']):.0f} s "
                                        f"on {os.cpu_count()} CPUs ({cpu})")


@pytest.fixture(scope="session", autouse=True)
def _runner_dirs(tmp_path_factory):
    """ansible-runner's directories (one per playbook run) under pytest's temporary directory,
    which keeps the last three runs' only, rather than in /tmp for good."""
    os.environ["WF_RUNNER_TMP"] = str(tmp_path_factory.mktemp("runner"))


@pytest.fixture(scope="session")
def lab_image() -> None:
    """Build the lab's base image unless this version of its recipe is already built."""
    # One builder at a time: the workers of a parallel run would otherwise both debootstrap it.
    lock = ROOT / ".cache" / "lab-image.lock"
    lock.parent.mkdir(exist_ok=True)
    with phase("image", "build or find"), lock.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        run("ansible-playbook", "-i", CONTROLLER, "playbooks/lab/image.yml")


@pytest.fixture(scope="session")
def fleet(lab_image, tmp_path_factory):
    """The suite's shared 3-host lab, converged from bare hosts once (fleet_first_run) and then
    used by every module that reads it or changes it and puts it back: test_bitnet, test_lab,
    test_runbooks, test_secrets, test_spillover (on its VM host and edge host), test_wireguard (which runs last, as it adds and removes a host
    and rotates keys). Each leaves it converged."""
    lab = Lab(tmp_path_factory.mktemp("fleet-inventory"), FLEET_PREFIX, "wrinklefree-fleet", "10.213.1.0/24", edge=1, vms=1,
              shared_facts=True, project=FLEET_PROJECT)
    yield from running(lab)


def _site(lab, what: str, cmdline: str = "", path: str = "playbooks/site.yml", **kwargs):
    with phase(lab.prefix, what):
        runner = playbook(path, lab, cmdline=cmdline, **kwargs)
    assert runner.rc == 0, output(runner)[-6000:]
    return runner


@pytest.fixture(scope="session")
def fleet_first_run_dir(tmp_path_factory) -> Path:
    """Where the first run writes its log (ansible.log) and ansible.cfg's fact cache (facts/)."""
    return tmp_path_factory.mktemp("fleet-first-run")


@pytest.fixture(scope="session")
def fleet_first_run(fleet, fleet_first_run_dir):
    """site.yml's first run on the fleet's bare hosts (the finished ansible-runner): at -vvv, with
    a log file and ansible.cfg's fact cache in fleet_first_run_dir, which test_secrets searches,
    as this is the run that makes and hands out every secret."""
    return _site(fleet, "site.yml first run", "-vvv", fact_cache_type="ansible.cfg",
                 envvars=env(ANSIBLE_LOG_PATH=str(fleet_first_run_dir / "ansible.log"),
                             ANSIBLE_CACHE_PLUGIN_CONNECTION=str(fleet_first_run_dir / "facts")))


@pytest.fixture(scope="session")
def fleet_second_run(fleet, fleet_first_run, fleet_first_run_dir):
    """site.yml run again right after the first, with the first run's fact cache (as ansible.cfg
    keeps one for an operator): the idempotence run every module checks, on every host."""
    return _site(fleet, "site.yml second run", **_first_run_facts(fleet_first_run_dir))


@pytest.fixture(scope="session")
def fleet_check_run(fleet, fleet_second_run, fleet_first_run_dir):
    """site.yml in check and diff mode on the converged fleet's edge host (the controller's plays
    too), which is in every group and so runs every task a base host runs, and the front door's;
    the other hosts' facts come from the cache, as in an operator's run limited to one host."""
    return _site(fleet, "site.yml check run", f"--check --diff --limit {fleet.host(1)},localhost",
                 **_first_run_facts(fleet_first_run_dir))


def _first_run_facts(fleet_first_run_dir: Path) -> dict:
    return {"fact_cache_type": "ansible.cfg",
            "envvars": env(ANSIBLE_CACHE_PLUGIN_CONNECTION=str(fleet_first_run_dir / "facts"))}


@pytest.fixture(scope="session")
def side_lab(lab_image, tmp_path_factory):
    """The second 3-host lab, shared by four modules on one worker (xdist group "side"), so the
    suite converges it from bare hosts once: test_faults first (its faults need a first run from
    bare hosts), then test_node_pool (pool_lab) on the hosts it leaves converged, then
    test_publish_model on the same run (pool_converged), then test_remove_and_add_host; its VM
    host (which no play touches) is test_train_node's training node."""
    lab = Lab(tmp_path_factory.mktemp("side-inventory"), SIDE_PREFIX, "wrinklefree-side", "10.213.6.0/24", vms=1,
              shared_facts=True)
    yield from running(lab)


@pytest.fixture(scope="module")
def fault_lab(side_lab):
    """The side lab for the fault-injection tests, which kill hosts and connections and break apt."""
    return side_lab


@pytest.fixture(scope="session")
def pool_vars(tmp_path_factory) -> dict:
    """The node pool's inputs on the side lab, for every site.yml run there once pool_lab made a
    controller: the pool user may forward (base), no `sky ssh up` (it installs k3s from the
    internet), SkyPilot from the wheels of the role's lock for the lab's Python 3.11, fetched on
    this machine (lab hosts have no PyPI)."""
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    download_wheels(wheelhouse, "--python-version", "3.11", "--require-hashes",
                    "-r", ROOT / "roles" / "skypilot_node_pool" / "files" / "skypilot-0.14.1.txt")
    return {"base_ssh_tcp_forwarding_users": ["skypilot"], "skypilot_node_pool_deploy": False,
            "skypilot_node_pool_wheelhouse": str(wheelhouse)}


@pytest.fixture(scope="session")
def pool_lab(side_lab):
    """The side lab with its first host as the SkyPilot controller and all three the node pool."""
    (side_lab.inventory / "controller.yml").write_text(
        f"all:\n  children:\n    sky_controller:\n      hosts:\n        {side_lab.host(1)}:\n")
    return side_lab


@pytest.fixture(scope="session")
def pool_converged(pool_lab, pool_vars):
    """The node pool's layers (tests/playbooks/node_pool.yml: base.yml, skypilot.yml) on the side
    lab that test_faults converged, once for test_node_pool and test_publish_model
    (test_remove_and_add_host runs after both)."""
    return _site(pool_lab, "the pool's layers", path=NODE_POOL_PLAYBOOK, extravars=pool_vars)
