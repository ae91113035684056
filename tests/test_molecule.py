"""Every Molecule scenario: create, converge, idempotence, a check-mode run that must report no
change on the converged hosts (unless the fleet's check run covers the role), verify, cleanup, destroy. Scenarios on lab hosts (driver managed) need the
lab image; those of the SkyPilot client's roles run on this controller."""

from __future__ import annotations

import pytest
import yaml

from wrinklefree_lab.helpers import ROOT, recap_changed, run

# Roles whose check mode site.yml's check run on the converged fleet proves (test_lab's and
# test_bitnet's fleet_check_run): their scenarios skip a second one.
CHECKED_ON_THE_FLEET = {"base", "bitnet", "frontdoor", "wireguard"}

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
        molecule("idempotence")
        if role_dir.name not in CHECKED_ON_THE_FLEET:
            check_run = molecule("converge", "--", "--check", "--diff")
            changed = recap_changed(check_run.stdout)
            assert changed and not any(changed.values()), f"check mode reported changes: {changed}"
        molecule("verify")
    finally:
        # cleanup: what a scenario started beside its hosts (the provision role's fake API).
        molecule("cleanup", check=False)
        molecule("destroy", check=False)
