"""The skypilot_node_pool role on the side lab as test_faults leaves it (converged), up to and not
including `sky ssh up` (which installs k3s from the internet): SkyPilot installed on the
controller host from a wheelhouse (lab hosts have no PyPI), a key made there, the pool user on
every pool host, the pool file checked by SkyPilot's loader, and SSH with TCP forwarding through
the WireGuard mesh."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from wrinklefree_lab.helpers import NODE_POOL_PLAYBOOK, ROOT, changed_hosts, env, mesh_registry, output, playbook, run, sh_out

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("side")]

LOCK = ROOT / "roles" / "skypilot_node_pool" / "files" / "skypilot-0.14.1.txt"





def test_second_run_changes_nothing(pool_lab, pool_vars, pool_converged):
    runner = playbook(NODE_POOL_PLAYBOOK, pool_lab, extravars=pool_vars)
    assert runner.rc == 0 and changed_hosts(runner) == {}, output(runner)[-4000:]


def test_pool_file_lists_every_host_by_its_mesh_address(pool_lab, pool_converged):
    mesh = mesh_registry(pool_lab)
    pool = yaml.safe_load(sh_out(pool_lab.host(1), "cat ~/.sky/ssh_node_pools.yaml"))
    assert pool == {"hetzner-base": {"user": "skypilot", "identity_file": "~/.ssh/sky-node-pool",
                                     "hosts": sorted(mesh[h]["address"] for h in mesh)}}
    sh_out(pool_lab.host(1), "/opt/skypilot/bin/python -c 'import sky; assert sky.__version__ == \"0.14.1\"'")


SSH = "ssh -i ~/.ssh/sky-node-pool -o BatchMode=yes -o StrictHostKeyChecking=accept-new"


def forward(host: str, port: int, target: str, address: str) -> str:
    """What comes back through `ssh -L port:target` from `host` to the pool user at `address`."""
    return sh_out(host, f"{SSH} -f -o ExitOnForwardFailure=yes -L {port}:{target} skypilot@{address} sleep 5 && "
                    f"timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}; head -c 7 <&3' || true")


def test_controller_logs_in_over_the_mesh_with_sudo_and_the_k3s_tunnel_only(pool_lab, pool_converged):
    mesh = mesh_registry(pool_lab)
    for port, host in ((18022, pool_lab.host(2)), (18023, pool_lab.host(3))):
        address = mesh[host]["address"]
        assert sh_out(pool_lab.host(1), f"{SSH} skypilot@{address} 'sudo -n id -un'").strip() == "root"
        # sky ssh up's tunnel to k3s's API (a stand-in listens on 6443) carries traffic; a forward
        # anywhere else (the host's sshd) is refused.
        sh_out(host, "systemd-run --quiet --unit=fake-k3s-api -p RuntimeMaxSec=30 python3 -c \""
                 "import socket; s = socket.create_server(('127.0.0.1', 6443)); c, _ = s.accept(); c.sendall(b'K3S-API')\"")
        assert forward(pool_lab.host(1), port, "127.0.0.1:6443", address) == "K3S-API"
        assert forward(pool_lab.host(1), port + 100, "127.0.0.1:22", address) == ""
    # Another pool host holding the controller's key is not the controller: refused.
    key = sh_out(pool_lab.host(1), "cat ~/.ssh/sky-node-pool")
    sh_out(pool_lab.host(2), f"umask 077 && mkdir -p ~/.ssh && cat > ~/.ssh/sky-node-pool <<'EOF'\n{key}EOF")
    try:
        refused = subprocess.run(["podman", "exec", pool_lab.host(2), "bash", "-c",
                                  f"{SSH} skypilot@{mesh[pool_lab.host(3)]['address']} true"],
                                 env=env(), capture_output=True, text=True)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
    finally:
        sh_out(pool_lab.host(2), "rm -f ~/.ssh/sky-node-pool")
    # Forwarding is the pool user's alone.
    config = sh_out(pool_lab.host(2), "sshd -T -C user=deploy,host=x,addr=10.0.0.1 | grep -i ^allowtcpforwarding")
    assert config.split() == ["allowtcpforwarding", "no"]


def test_k3s_will_open_no_port_past_the_firewall(pool_lab, pool_converged):
    """What sky ssh up's k3s reads when it starts: no servicelb, no traefik, NodePorts on the
    host's mesh address only (the lab stops short of installing k3s, which needs the internet)."""
    pool = yaml.safe_load(sh_out(pool_lab.host(1), "cat ~/.sky/ssh_node_pools.yaml"))
    addresses = next(iter(pool.values()))["hosts"]
    for host, address in zip([pool_lab.host(i) for i in (1, 2, 3)], addresses):
        config = yaml.safe_load(sh_out(host, "cat /etc/rancher/k3s/config.yaml"))
        assert config == {"disable": ["servicelb", "traefik"], "kube-proxy-arg": [f"nodeport-addresses={address}/32"],
                          "node-ip": address, "flannel-iface": "wg0"}
        # k3s's own ports, to the other pool hosts over the mesh only.
        chain = sh_out(host, "nft list chain inet wrinklefree input")
        for port in ("tcp dport 6443", "tcp dport 10250", "udp dport 8472"):
            rule = next(line for line in chain.splitlines() if port in line)
            assert 'iifname "wg0"' in rule and all(a in rule for a in addresses), rule


def test_private_key_stays_on_the_controller_host(pool_lab, pool_converged):
    private = sh_out(pool_lab.host(1), "cat ~/.ssh/sky-node-pool")
    assert "PRIVATE KEY" in private
    for path in pool_lab.inventory.rglob("*"):
        if path.is_file():
            assert private.strip() not in path.read_text(errors="ignore"), path
    for host in (pool_lab.host(2), pool_lab.host(3)):
        assert "PRIVATE KEY" not in sh_out(host, "cat /home/skypilot/.ssh/* 2>/dev/null || true")


def test_a_conflict_with_the_base_role_fails_before_any_change(pool_lab, pool_vars, pool_converged):
    """skypilot.yml played alone checks where the pool meets the base layer before any play
    changes a host. (Every input case, through preflight on closed hosts: test_bad_input.)"""
    runner = playbook("playbooks/skypilot.yml", pool_lab, extravars={**pool_vars, "base_ssh_tcp_forwarding_users": ["deploy"]})
    assert runner.rc != 0 and changed_hosts(runner) == {}
    assert ("The SkyPilot node pool tunnels over SSH, which the base role forbids by default: "
            "set base_ssh_tcp_forwarding_users: [skypilot] for group bitnet") in " ".join(output(runner).split())


def test_a_wheel_unlike_the_lock_is_never_installed(pool_lab, pool_vars, pool_converged, tmp_path):
    """pip checks what it downloads against the lock: a SkyPilot wheel whose digest differs from
    the lock's (here the lock's digests are changed) fails the run, and nothing records it as
    installed; the next run with the right lock installs it again."""
    controller = pool_lab.host(1)
    forged = tmp_path / "skypilot.txt"
    forged.write_text(re.sub(r"(?ms)^skypilot==.*?(?=^\S)",
                             lambda block: re.sub("sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, block.group(0)),
                             LOCK.read_text()))
    sh_out(controller, "/opt/skypilot/bin/pip uninstall -q -y skypilot")
    runner = playbook("playbooks/skypilot.yml", pool_lab, cmdline="--tags skypilot",
                      extravars={**pool_vars, "skypilot_node_pool_requirements": str(forged)})
    assert runner.rc != 0 and "DO NOT MATCH THE HASHES" in output(runner), output(runner)[-4000:]
    assert sh_out(controller, "cat /opt/skypilot/wrinklefree-requirements.txt") == LOCK.read_text().rstrip("\n")
    runner = playbook("playbooks/skypilot.yml", pool_lab, extravars=pool_vars, cmdline="--tags skypilot")
    assert runner.rc == 0, output(runner)[-4000:]
    sh_out(controller, "/opt/skypilot/bin/python -c 'import sky; assert sky.__version__ == \"0.14.1\"'")
