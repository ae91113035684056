"""The base role's forward chain, in network namespaces of this machine (real nftables, real
forwarding): a DNAT'd port (what k3s makes of a NodePort, a host port or a service load
balancer) is reachable from the mesh and the pod network, never from the public interface,
although the input chain's default deny never sees that traffic.

    inet ── pub0 ┐
    mesh ── wg0  ├─ fw (the base ruleset; DNAT :30080 -> pod:8080, as kube-proxy would) ── cni0 ── pod
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from wrinklefree_lab.labs import CONTROLLER
from wrinklefree_lab.helpers import ROOT, run

pytestmark = pytest.mark.skipif(shutil.which("nft") is None or os.geteuid() != 0,
                                reason="needs root and nftables (bin/wf setup installs it)")

LINKS = {"inet": ("pub0", "10.250.1"), "mesh": ("wg0", "10.250.2"), "pod": ("cni0", "10.250.3")}


def ns(name: str, *command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *command], check=check, capture_output=True, text=True)


def reaches(name: str, address: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(('{address}', {port}), 2).close()"
    return ns(name, "python3", "-c", probe, check=False).returncode == 0


@pytest.fixture
def namespaces(tmp_path):
    prefix = f"wf{os.getpid() % 100000}-"
    names = {role: prefix + role for role in ("fw", *LINKS)}
    server = None
    try:
        for name in names.values():
            subprocess.run(["ip", "netns", "add", name], check=True)
        fw = names["fw"]
        for role, (iface, net) in LINKS.items():
            subprocess.run(["ip", "link", "add", f"{prefix}{role}", "netns", names[role], "type", "veth",
                            "peer", "name", iface, "netns", fw], check=True)
            ns(names[role], "ip", "link", "set", f"{prefix}{role}", "name", "eth0")
            ns(names[role], "ip", "addr", "add", f"{net}.2/24", "dev", "eth0")
            ns(fw, "ip", "addr", "add", f"{net}.1/24", "dev", iface)
            for side, dev in ((names[role], "eth0"), (fw, iface)):
                ns(side, "ip", "link", "set", dev, "up")
                ns(side, "ip", "link", "set", "lo", "up")
            ns(names[role], "ip", "route", "add", "default", "via", f"{net}.1")
        ns(fw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # kube-proxy's part: the NodePort rewritten to the pod.
        ns(fw, "nft", "add table ip nat; add chain ip nat prerouting { type nat hook prerouting priority dstnat; };"
                      " add rule ip nat prerouting tcp dport 30080 dnat to 10.250.3.2:8080")
        server = subprocess.Popen(["ip", "netns", "exec", names["pod"], "python3", "-m", "http.server", "8080",
                                   "--bind", "10.250.3.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(50):
            if reaches(fw, "10.250.3.2", 8080):
                break
            time.sleep(0.1)
        yield names
    finally:
        if server:
            server.terminate()
            server.wait()
        for name in names.values():
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_dnat_is_reachable_from_the_mesh_and_pods_only(namespaces, tmp_path):
    fw = namespaces["fw"]
    # Without the base ruleset the NodePort faces the public interface: the case to close.
    assert reaches(namespaces["inet"], "10.250.1.1", 30080)
    dropins = tmp_path / "nftables.d"
    dropins.mkdir()
    rules = tmp_path / "nftables.conf"
    run("ansible-playbook", "-i", CONTROLLER, "tests/playbooks/render_nftables.yml", "-e", f"render_dest={rules}",
        "-e", f"base__nftables_dropins={dropins}", "-e", "base_ssh_port=22", cwd=ROOT)
    ns(fw, "nft", "-f", str(rules))
    assert not reaches(namespaces["inet"], "10.250.1.1", 30080)
    assert reaches(namespaces["mesh"], "10.250.2.1", 30080)
    assert "dnat from outside" in ns(fw, "nft", "list", "chain", "inet", "wrinklefree", "forward").stdout
