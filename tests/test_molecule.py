"""Every Molecule scenario: create, converge, idempotence, a check-mode run that must report no
change on the converged hosts (both unless the fleet's second and check runs cover the role),
verify, cleanup, destroy. Scenarios on lab hosts (driver managed) need the
lab image; those of the SkyPilot client's roles run on this controller.

The scenarios of roles that other modules of the suite also converge and test end to end
(END_TO_END: a lab, the fake Hetzner APIs, or the SkyPilot SDK's recording fake) cover nothing those modules do
not, and take two to ten minutes each on a 2-core machine: a run takes those whose role the
working tree or the last commit changes (its README aside). WF_MOLECULE=all runs all of them."""

from __future__ import annotations

import functools
import os
import subprocess

import pytest
import yaml

from wrinklefree_lab.helpers import ROOT, recap_changed, run

# Roles whose idempotence and check mode site.yml's second run and check run on the converged
# fleet prove (conftest's fleet_second_run on every host, fleet_check_run on the edge host,
# which runs every role's tasks: changed=0): their
# scenarios skip both, and test the role alone: converge and verify.
ON_THE_FLEET = {"base", "bitnet", "frontdoor", "wireguard"}

# The fleet converges base, bitnet, frontdoor and wireguard, the side lab the node pool
# (test_node_pool); test_provision runs provision.yml against the fake Cloud API (plan, create,
# faults, scaling, a rerun changing nothing) and test_sky serve.yml and train.yml against the SkyPilot
# SDK's recording fake, tests/wrinklefree_lab/fake_sky.py (check mode, a second run changing nothing, update, cancel).
END_TO_END = ("base", "bitnet", "frontdoor", "provision", "serve", "skypilot_node_pool", "train", "wireguard")


@functools.cache
def end_to_end_to_run() -> frozenset[str]:
    """The END_TO_END roles whose scenario this run takes (all of them outside a git checkout);
    asked once per run, not once per scenario."""
    def git(*args: str) -> list[str]:
        return subprocess.run(["git", *args], cwd=ROOT, text=True, capture_output=True, check=True).stdout.split()

    if os.environ.get("WF_MOLECULE") == "all":
        return frozenset(END_TO_END)
    try:
        changed = git("diff", "--name-only", "HEAD")
        # A shallow clone has no parent to compare with.
        if git("rev-parse", "--is-shallow-repository") != ["true"] and int(git("rev-list", "--count", "HEAD")[0]) > 1:
            changed += git("diff", "--name-only", "HEAD~1", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        return frozenset(END_TO_END)
    roles = {path.split("/")[1] for path in changed if path.startswith("roles/") and not path.endswith(".md")}
    return frozenset(roles & set(END_TO_END))


SCENARIOS = sorted((p.parent.parent.parent, p.parent.name) for p in ROOT.glob("roles/*/molecule/*/molecule.yml"))


@pytest.mark.molecule
@pytest.mark.parametrize("role_dir,scenario", SCENARIOS, ids=lambda v: getattr(v, "name", v))
def test_scenario(request, role_dir, scenario):
    if role_dir.name in END_TO_END and role_dir.name not in end_to_end_to_run():
        pytest.skip(f"{role_dir.name}: the suite tests the role end to end; its scenario runs when the role changes (WF_MOLECULE=all runs it now)")
    driver = yaml.safe_load((role_dir / "molecule" / scenario / "molecule.yml").read_text())["driver"]
    if driver.get("options", {}).get("managed", True):
        request.getfixturevalue("lab_image")

    def molecule(*args, check=True):
        return run("molecule", *args[:1], "-s", scenario, *args[1:], cwd=role_dir, check=check)

    try:
        molecule("destroy")
        molecule("create")
        molecule("prepare")
        molecule("converge")
        if role_dir.name not in ON_THE_FLEET:
            molecule("idempotence")
            check_run = molecule("converge", "--", "--check", "--diff")
            changed = recap_changed(check_run.stdout)
            assert changed and not any(changed.values()), f"check mode reported changes: {changed}"
        molecule("verify")
    finally:
        # cleanup: what a scenario started beside its hosts (the provision role's fake API).
        molecule("cleanup", check=False)
        molecule("destroy", check=False)
