#!/usr/bin/env python3
"""Benchmark: a rolling change of the base layer's server arguments against restarting every
server at once, under the same steady load through the front door, on the operator's lab.

In one invocation, with --clients closed-loop clients on this machine sending completions to the
front door the whole time:
  1. steady: no change, --seconds long (the baseline of the ratios);
  2. all at once: every llama-server restarted at the same moment (what a change did before
     playbooks/bitnet.yml rolled), measured over --seconds from the restart;
  3. rolling: `ansible-playbook playbooks/bitnet.yml -e bitnet_server_ctx_size=N` (drain, restart,
     check, back in rotation, one host at a time), then the same back to the inventory's value.
Each line gives requests, failed requests, p50 and p99 (ratios against steady), and for the
rolling runs the rollout's wall time. The lab's stand-in server takes lab_model_load_ms (2 s) to
load its model, as a real one takes seconds.

Needs the lab: bin/wf lab [-e lab_host_count=6] (as root: it runs podman and SSH).
    .venv/bin/python bench/rollout.py [--clients 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
from pathlib import Path

from wrinklefree_lab.helpers import env, output, playbook
from wrinklefree_lab.loadgen import Result, load

ROOT = Path(__file__).resolve().parent.parent
INVENTORY = ROOT / "inventories" / "lab"


def under_load(address: str, key: str, clients: int, action) -> tuple[Result, float]:
    """The load's result while action() runs, and action's wall time."""
    stop, holder = threading.Event(), {}
    thread = threading.Thread(target=lambda: holder.update(result=load(address, 8000, clients, 3600, n_predict=8, key=key,
                                                                        stop=stop)))
    thread.start()
    time.sleep(1)
    started = time.monotonic()
    action()
    took = time.monotonic() - started
    stop.set()
    thread.join()
    return holder["result"], took


def restart_all(hosts: list[str]) -> None:
    threads = [threading.Thread(target=subprocess.run, args=(["podman", "exec", host, "systemctl", "restart", "bitnet-server@tiny"],),
                                kwargs={"env": env(), "check": True}) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def roll(**extravars) -> None:
    runner = playbook("playbooks/bitnet.yml", INVENTORY, extravars=extravars)
    if runner.rc != 0:
        raise SystemExit(output(runner)[-3000:])


def line(name: str, result: Result, base: Result | None = None, took: float | None = None) -> str:
    p50, p99 = result.percentile(0.5), result.percentile(0.99)
    ratio = f"  p50 x{p50 / base.percentile(0.5):.2f}  p99 x{p99 / base.percentile(0.99):.2f}" if base else ""
    rollout = f"  rollout {took:6.1f} s" if took is not None else ""
    return (f"{name:<30} {len(result.statuses):>6} req  {result.failed:>5} failed  p50 {p50 * 1000:>7.1f} ms  "
            f"p99 {p99 * 1000:>7.1f} ms{ratio}{rollout}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    inventory = json.loads(subprocess.run(["ansible-inventory", "-i", str(INVENTORY), "--list"], env=env(), cwd=ROOT,
                                          check=True, capture_output=True, text=True).stdout)
    edge, hosts = inventory["edge"]["hosts"][0], sorted(inventory["bitnet"]["hosts"])
    address = inventory["_meta"]["hostvars"][edge]["ansible_host"]
    # ansible-inventory marks values that came from an API as unsafe (not to be templated).
    address = address.get("__ansible_unsafe", address) if isinstance(address, dict) else address
    key = (INVENTORY / ".state" / "frontdoor-api-key").read_text().strip()
    print(f"front door on {edge} ({address}:8000), {len(hosts)} base servers, {args.clients} clients")

    steady, _ = under_load(address, key, args.clients, lambda: time.sleep(args.seconds))
    at_once, _ = under_load(address, key, args.clients, lambda: (restart_all(hosts), time.sleep(args.seconds)))
    rolled, took = under_load(address, key, args.clients, lambda: roll(bitnet_server_ctx_size=2048))
    back, took_back = under_load(address, key, args.clients, roll)
    print(line("steady (no change)", steady))
    print(line("all servers restarted at once", at_once, steady))
    print(line("rolling change (ctx 2048)", rolled, steady, took))
    print(line("rolling change back", back, steady, took_back))


if __name__ == "__main__":
    main()
