"""The repository is the collection wrinklefree.deployer: `ansible-galaxy collection build` makes
an artifact that another project installs and runs, with nothing of this checkout around it."""

from __future__ import annotations

import json
import tarfile

import yaml

from wrinklefree_lab.helpers import ROOT, env, run

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMr0nJ2wX3m1o8m3x0u5l2b1Gm2eYx0aQkS3c1v0xw8W test"


def test_built_collection_installs_and_runs_in_another_project(tmp_path):
    run("ansible-galaxy", "collection", "build", "--output-path", tmp_path / "dist")
    tarball = next((tmp_path / "dist").glob("wrinklefree-deployer-*.tar.gz"))
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
