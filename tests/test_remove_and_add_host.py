"""The host runbooks on the side lab's node pool, last of the lab's modules that converge it (after
test_node_pool and test_publish_model, which use it converged): remove-host.yml on a host that is
down (its peers and the pool forget it), add-host.yml bringing it back into the mesh and the
pool, remove-host.yml on a host that answers (the pool access leaves with it)."""

from __future__ import annotations

import pytest
import yaml

from wrinklefree_lab.helpers import mesh_registry, output, playbook, run, sh_out

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("side")]


def wg_peers(host: str) -> set[str]:
    return set(sh_out(host, "wg show wg0 peers").split())


def test_remove_host_that_is_unreachable_leaves_every_peer_list_and_the_pool(pool_lab, pool_vars, pool_converged):
    gone = pool_lab.host(3)
    mesh = mesh_registry(pool_lab)
    run("podman", "stop", "-t", "2", gone)
    runner = playbook("playbooks/runbooks/remove-host.yml", pool_lab, extravars={**pool_vars, "host": gone})
    assert runner.rc == 0, output(runner)[-4000:]
    assert "Delete the server at Hetzner" in " ".join(output(runner).split())
    for host in (pool_lab.host(1), pool_lab.host(2)):
        assert mesh[gone]["public_key"] not in wg_peers(host)
    assert gone not in mesh_registry(pool_lab)
    pool = yaml.safe_load(sh_out(pool_lab.host(1), "cat ~/.sky/ssh_node_pools.yaml"))
    assert mesh[gone]["address"] not in pool["hetzner-base"]["hosts"] and len(pool["hetzner-base"]["hosts"]) == 2


def test_add_host_joins_the_mesh_and_the_pool_again(pool_lab, pool_vars, pool_converged):
    back = pool_lab.host(3)
    run("podman", "start", back)
    sh_out(back, "systemctl is-system-running --wait || true")
    runner = playbook("playbooks/runbooks/add-host.yml", pool_lab, extravars={**pool_vars, "host": back})
    assert runner.rc == 0, output(runner)[-4000:]
    mesh = mesh_registry(pool_lab)
    for host in (pool_lab.host(1), pool_lab.host(2)):
        assert mesh[back]["public_key"] in wg_peers(host)
        sh_out(host, f"for i in 1 2 3 4 5 6; do ping -c1 -W1 {mesh[back]['address']} >/dev/null && exit 0; sleep 1; done; exit 1")
    pool = yaml.safe_load(sh_out(pool_lab.host(1), "cat ~/.sky/ssh_node_pools.yaml"))
    assert mesh[back]["address"] in pool["hetzner-base"]["hosts"]


def test_remove_host_takes_the_pool_access_off_a_host_that_answers(pool_lab, pool_vars, pool_converged):
    """Last: the pool user, its key and sudo, and k3s's configuration leave with the host."""
    gone = pool_lab.host(3)
    assert sh_out(gone, "getent passwd skypilot || true") != ""
    runner = playbook("playbooks/runbooks/remove-host.yml", pool_lab, extravars={**pool_vars, "host": gone})
    assert runner.rc == 0, output(runner)[-4000:]
    assert sh_out(gone, "getent passwd skypilot; ls -d /home/skypilot /etc/sudoers.d/90-skypilot-node-pool "
                    "/etc/rancher/k3s/config.yaml 2>/dev/null || true") == ""
    assert "dport 6443" not in sh_out(gone, "nft list chain inet wrinklefree input")
