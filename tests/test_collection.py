"""The repository is the collection wrinklefree.deployer: `ansible-galaxy collection build` makes
an artifact that another project installs and runs, with nothing of this checkout around it, and
that passes `ansible-test sanity`."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

import ansible_test
import pytest
import yaml

from wrinklefree_lab.helpers import ROOT, download_wheels, env, run

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMr0nJ2wX3m1o8m3x0u5l2b1Gm2eYx0aQkS3c1v0xw8W test"


@pytest.fixture(scope="module")
def tarball(tmp_path_factory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    run("ansible-galaxy", "collection", "build", "--output-path", dist)
    return next(dist.glob("wrinklefree-deployer-*.tar.gz"))


def test_built_collection_installs_and_runs_in_another_project(tarball, tmp_path):
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert {"roles/bitnet/tasks/main.yml", "plugins/modules/sky_job.py", "plugins/inventory/hetzner_fleet.py",
            "playbooks/site.yml", "meta/runtime.yml"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "playbooks/lab/", "collections/", "inventories/"))]

    # Another project: a directory and configuration of its own, the installed collection only.
    project = tmp_path / "project"
    project.mkdir()
    (project / "ansible.cfg").write_text(f"[defaults]\ncollections_path = {tmp_path / 'collections'}\n")
    project_env = env(ANSIBLE_CONFIG=str(project / "ansible.cfg"))
    run("ansible-galaxy", "collection", "install", "--no-deps", "--offline", "-p", tmp_path / "collections", tarball,
        cwd=project, env=project_env)
    assert (tmp_path / "collections" / "ansible_collections" / "wrinklefree" / "deployer" / "MANIFEST.json").is_file()
    # Hosts behind closed ports: preflight needs none of them, the first real task meets the port.
    hosts = {name: {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_user": "root"} for name in ("a", "b")}
    (project / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        group: {"hosts": hosts if group == "base" else dict.fromkeys(hosts)} for group in ("base", "wireguard", "bitnet", "edge")}}}))

    def site(**extravars):
        return run("ansible-playbook", "-i", "hosts.yml", "wrinklefree.deployer.site",
                   "-e", json.dumps({"base_admin_ssh_public_keys": [KEY], **extravars}),
                   cwd=project, env=project_env, check=False)

    typo = site(base_ssh_prot=2222)
    assert typo.returncode != 0 and "unknown variable base_ssh_prot (did you mean base_ssh_port?)" in typo.stdout, typo.stdout[-3000:]
    good = site()
    assert "UNREACHABLE" in good.stdout and "a                          : ok=" in good.stdout, good.stdout[-3000:]
    assert str(ROOT) not in good.stdout, "the run used this checkout, not the installed collection"


def test_the_built_collection_passes_ansible_test_sanity(tarball, tmp_path):
    """`ansible-test sanity` on what the collection ships (the artifact, with tests/sanity's ignore
    file beside it: each line carries its reason). ansible-test makes a venv per sanity test and
    bootstraps pip there with a script from ci-files.testing.ansible.com, which this network does
    not reach: it gets, in a HOME of its own, a script that runs pip from the wheel of the version
    it pins, and a pip configuration that installs only the wheels of its sanity requirements,
    fetched here first (hash-pinned by ansible-test's own requirement files)."""
    data = Path(ansible_test.__file__).parent
    pip = re.search(r"pip='([0-9.]+)'", (data / "_internal" / "python_requirements.py").read_text())
    assert pip, "ansible-test's pinned pip version not found"
    wheels = tmp_path / "wheels"
    download_wheels(wheels, f"pip=={pip[1]}")
    for requirements in sorted((data / "_data" / "requirements").glob("sanity.*.txt")):
        download_wheels(wheels, "-r", requirements)
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(f"[global]\nno-index = true\nfind-links = {wheels}\n")
    bootstrap = home / ".ansible" / "test" / "cache" / f"get_pip_{pip[1].replace('.', '_')}.py"
    bootstrap.parent.mkdir(parents=True)
    wheel = next(wheels.glob(f"pip-{pip[1]}-*.whl"))
    bootstrap.write_text(
        "# pip from its wheel, in place of get-pip (whose own options it drops).\n"
        f"import runpy, sys\nsys.path.insert(0, {str(wheel)!r})\n"
        "sys.argv = ['pip', 'install'] + [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]\n"
        "runpy.run_module('pip', run_name='__main__', alter_sys=True)\n")

    collection = tmp_path / "ansible_collections" / "wrinklefree" / "deployer"
    collection.mkdir(parents=True)
    with tarfile.open(tarball) as archive:
        archive.extractall(collection, filter="data")
    (collection / "tests" / "sanity").mkdir(parents=True)
    for ignore in (ROOT / "tests" / "sanity").glob("ignore-*.txt"):
        shutil.copy(ignore, collection / "tests" / "sanity")
    done = run("ansible-test", "sanity", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}", cwd=collection,
               env=env(HOME=str(home)), check=False)
    assert done.returncode == 0, done.stdout[-6000:]
    assert 'Running sanity test "validate-modules"' in done.stdout
