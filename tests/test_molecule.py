"""Every Molecule scenario: create, converge, idempotence, a check-mode run that must report no
change on the converged hosts (both unless the fleet's second and check runs cover the role),
verify, cleanup, destroy. Scenarios on lab hosts (driver managed) need the
lab image; those of the SkyPilot client's roles run on this controller."""

from __future__ import annotations

import pytest
import yaml

from wrinklefree_lab.helpers import ROOT, recap_changed, run

# Roles whose idempotence and check mode site.yml's second run and check run on the converged
# fleet prove (conftest's fleet_second_run and fleet_check_run: every host, changed=0): their
# scenarios skip both, and test the role alone: converge and verify.
ON_THE_FLEET = {"base", "bitnet", "frontdoor", "wireguard"}

SCENARIOS = sorted((p.parent.parent.parent, p.parent.name) for p in ROOT.glob("roles/*/molecule/*/molecule.yml"))


@pytest.mark.molecule
@pytest.mark.parametrize("role_dir,scenario", SCENARIOS, ids=lambda v: getattr(v, "name", v))
def test_scenario(request, role_dir, scenario):
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
