#!/usr/bin/env python3
"""Benchmark: the front door (HAProxy on the edge host) against a base server reached directly,
and the base layer alone against base + burst at twice its capacity, on the operator's lab.

In one invocation, each load run from the edge host itself (so client and network are the same
for both sides of a ratio), closed-loop clients for --seconds each:
  1. one client to one base server direct (its mesh address) vs through the front door: with no
     queueing on either side, the ratios are the front door's own overhead;
  2. 2x the base layer's slots through the front door with burst off (the excess queues) and on
     (the excess goes to the burst replica on the lab's VM host): requests/s, p50, p99, ratios.

Needs the lab with a VM host: bin/wf lab -e lab_vm_count=1 (as root: it runs podman and SSH).
    .venv/bin/python bench/spillover.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import tempfile
from pathlib import Path

from wrinklefree_lab import cloud_vm
from wrinklefree_lab.helpers import env, output, playbook

ROOT = Path(__file__).resolve().parent.parent


INVENTORY = ROOT / "inventories" / "lab"
KEY = "bench-burst-key-0123456789"


def on_edge(edge: str, *args: str) -> dict:
    """Run tests/wrinklefree_lab/loadgen.py on the edge host (podman exec) and return its JSON result."""
    subprocess.run(["podman", "cp", str(ROOT / "tests" / "wrinklefree_lab" / "loadgen.py"), f"{edge}:/tmp/loadgen.py"], env=env(), check=True)
    done = subprocess.run(["podman", "exec", edge, "python3", "/tmp/loadgen.py", *args], env=env(), check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def frontdoor(**extravars) -> None:
    runner = playbook("playbooks/runbooks/burst.yml", INVENTORY, extravars=extravars)
    if runner.rc != 0:
        raise SystemExit(output(runner)[-3000:])


def line(name: str, result: dict, base: dict | None = None) -> str:
    ratio = (f"  rate x{result['rate'] / base['rate']:.2f}  p50 x{result['p50'] / base['p50']:.2f}  "
             f"p99 x{result['p99'] / base['p99']:.2f}") if base else ""
    return (f"{name:<34} {result['requests']:>6} req  {result['failed']:>3} failed  {result['rate']:>8.1f} req/s  "
            f"p50 {result['p50'] * 1000:>7.1f} ms  p99 {result['p99'] * 1000:>7.1f} ms{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--subnet", default="10.213.0.0/24", help="the lab's subnet (its VM host is .101)")
    args = parser.parse_args()
    subnet = ipaddress.ip_network(args.subnet)
    # The front door's host and the base servers, as the lab's inventory groups them.
    inventory = json.loads(subprocess.run(["ansible-inventory", "-i", str(INVENTORY), "--list"], env=env(), cwd=ROOT,
                                          check=True, capture_output=True, text=True).stdout)
    edge, hosts = inventory["edge"]["hosts"][0], len(inventory["bitnet"]["hosts"])
    address = inventory["_meta"]["hostvars"][edge]["ansible_host"]
    # ansible-inventory marks values that came from an API as unsafe (not to be templated).
    address = address.get("__ansible_unsafe", address) if isinstance(address, dict) else address
    fact = json.loads(subprocess.run(["podman", "exec", edge, "cat", "/etc/ansible/facts.d/bitnet.fact"], env=env(),
                                     check=True, capture_output=True, text=True).stdout)
    model = fact["models"][0]
    slots = model["parallel"]

    # The burst replica on the VM host, as SkyPilot would start it, with this run's key.
    vm = cloud_vm.CloudVM(INVENTORY, str(subnet[101]))
    vm.ssh("systemctl stop sky-run", check=False)
    with tempfile.TemporaryDirectory() as tmp:
        cloud_vm.start_replica(vm, cloud_vm.burst_spec(INVENTORY, Path(tmp), KEY, vm.address), KEY)

    print(f"front door on {edge} ({address}:8000), {hosts} base servers x {slots} slots, burst replica on {vm.address}")
    frontdoor(frontdoor_burst=False)
    # Direct, a client sends the base servers' key itself (the front door adds it for its clients).
    base_key = (INVENTORY / ".state" / "bitnet-api-key").read_text().strip()
    direct = on_edge(edge, fact["bind"], str(model["port"]), "1", str(args.seconds), "16", base_key)
    client_key = (INVENTORY / ".state" / "frontdoor-api-key").read_text().strip()
    through = on_edge(edge, address, "8000", "1", str(args.seconds), "16", client_key)
    print(line("one client, one server direct", direct))
    print(line("one client, through the front door", through, direct))

    load = str(2 * slots * hosts)
    base_only = on_edge(edge, address, "8000", load, str(args.seconds), "16", client_key)
    frontdoor(frontdoor_burst=True, frontdoor_burst_endpoint=f"http://{vm.address}:8080", frontdoor_burst_api_key=KEY)
    spill = on_edge(edge, address, "8000", load, str(args.seconds), "16", client_key)
    frontdoor(frontdoor_burst=False)
    print(line(f"2x load ({load} clients), base only", base_only))
    print(line(f"2x load ({load} clients), spillover", spill, base_only))


if __name__ == "__main__":
    main()
