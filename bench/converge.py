#!/usr/bin/env python3
"""Benchmark: site.yml convergence on 1, 3 and 6 lab hosts, the project's ansible.cfg against
Ansible's defaults for the speed settings (and, with --mitogen, the project's with Mitogen).

For each size and configuration, in one invocation: a fresh lab of its own, the first run of
playbooks/site.yml (bare hosts to serving), then --repeat no-op runs (median). Prints the wall
times, changed counts and ratios (defaults / project), and where a no-op run's time goes: the
slowest tasks by wall time across hosts, from ansible-runner's events (what profile_tasks shows).

"defaults" is ansible.cfg without the speed settings (forks, gathering, fact cache, pipelining,
SSH multiplexing arguments); paths and correctness settings are the same. "mitogen" is the
project's ansible.cfg with Mitogen's linear strategy, installed by this script into a directory
of its own (not a project dependency).

The lab's hosts are containers on the controller's bridge, with no latency; --rtt-ms puts
bench/delay_proxy.py between ssh and every host (as its ProxyCommand), so that the run sees a
fleet that many milliseconds away, as a controller outside Hetzner's network does.

    .venv/bin/python bench/converge.py [--sizes 1 3 6] [--repeat 3] [--rtt-ms 30] [--mitogen]   (as root)
"""

from __future__ import annotations

import argparse
import configparser
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from wrinklefree_lab import helpers
from wrinklefree_lab.helpers import run
from wrinklefree_lab.labs import Lab

ROOT = Path(__file__).resolve().parent.parent

from mesh import timed  # noqa: E402

SPEED = {"defaults": ["forks", "gathering", "fact_caching", "fact_caching_connection", "fact_caching_timeout"],
         "ssh_connection": ["pipelining", "ssh_args"]}
PATHS = ["inventory", "collections_path", "fact_caching_connection"]
MITOGEN = "mitogen==0.3.54"
# ansible-runner points the fact cache at each run's artifact directory, so no run would find the
# facts of the last one; any fact_cache_type other than "jsonfile" leaves ansible.cfg's in force.
KEEP_CFG_FACT_CACHE = "ansible.cfg"


def write_cfg(directory: Path, name: str, drop=SPEED, add=None) -> Path:
    """ansible.cfg with its paths made absolute, some settings removed and some added."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "ansible.cfg")
    for section, keys in drop.items():
        for key in keys:
            cfg.remove_option(section, key)
    for key in PATHS:
        if cfg.has_option("defaults", key):
            cfg.set("defaults", key, str(ROOT / cfg.get("defaults", key)))
    for key, value in (add or {}).items():
        cfg.set("defaults", key, value)
    path = directory / f"ansible-{name}.cfg"
    with path.open("w") as f:
        cfg.write(f)
    return path


def mitogen_cfg(directory: Path) -> tuple[Path, dict]:
    """Mitogen in a directory of its own and the project's settings with its strategy."""
    target = directory / "mitogen"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), MITOGEN], check=True)
    cfg = write_cfg(directory, "mitogen", drop={}, add={
        "strategy_plugins": str(target / "ansible_mitogen" / "plugins" / "strategy"), "strategy": "mitogen_linear"})
    return cfg, {"PYTHONPATH": str(target)}


def slowest(events: list, count: int = 6) -> list[tuple[str, float]]:
    """Tasks by wall time (first start to last end over the hosts), from the runner's events.
    Keyed by task UUID: the same task file runs in preflight and in its role."""
    names: dict[str, str] = {}
    spans: dict[str, list[datetime]] = {}
    for event in events:
        data = event.get("event_data", {})
        if event["event"] in ("runner_on_ok", "runner_on_skipped", "runner_on_failed") and data.get("start"):
            names[data["task_uuid"]] = data.get("task", "?")
            span = spans.setdefault(data["task_uuid"], [])
            span += [datetime.fromisoformat(data["start"]), datetime.fromisoformat(data["end"])]
    walls = [(names[uuid], (max(s) - min(s)).total_seconds()) for uuid, s in spans.items()]
    return sorted(walls, key=lambda item: -item[1])[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--repeat", type=int, default=3, help="no-op runs per size and configuration (median)")
    parser.add_argument("--mitogen", action="store_true", help=f"also time the project's settings with {MITOGEN}")
    parser.add_argument("--rtt-ms", type=float, default=0, help="round-trip time added between ssh and each host")
    args = parser.parse_args()
    ssh = {}
    if args.rtt_ms:
        proxy = f"{sys.executable} {ROOT / 'bench' / 'delay_proxy.py'} --one-way-ms {args.rtt_ms / 2} %h %p"
        ssh["ANSIBLE_SSH_EXTRA_ARGS"] = "-o " + shlex.quote(f"ProxyCommand={proxy}")
    run("ansible-playbook", "-i", ROOT / "inventories" / "controller", "playbooks/lab/image.yml")
    scratch = Path(tempfile.mkdtemp(prefix="wf-bench-cfg-"))
    configs = {"defaults": (write_cfg(scratch, "defaults"), {}), "project": (ROOT / "ansible.cfg", {})}
    if args.mitogen:
        configs["mitogen"] = mitogen_cfg(scratch)
    base_env = helpers.env
    results = {}
    for size in args.sizes:
        for name, (cfg, extra) in configs.items():
            lab = Lab(Path(tempfile.mkdtemp(prefix="wf-bench-converge-")), "wf-bench-cv-", "wrinklefree-bench-cv",
                      "10.213.11.0/24")
            # SSH masters and cached facts of this lab only: the last lab's (same names and addresses)
            # would be reused.
            settings = {"ANSIBLE_CONFIG": str(cfg), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(lab.inventory / ".cp"),
                        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(lab.inventory / ".facts"), **extra, **ssh}
            helpers.env = lambda settings=settings, **more: base_env(**settings | more)
            try:
                lab.up(size)
                first = timed("playbooks/site.yml", lab, fact_cache_type=KEEP_CFG_FACT_CACHE)
                noops = [timed("playbooks/site.yml", lab, fact_cache_type=KEEP_CFG_FACT_CACHE) for _ in range(args.repeat)]
            finally:
                helpers.env = base_env
                lab.down()
            median = statistics.median(seconds for seconds, _, _ in noops)
            typical = min(noops, key=lambda r: abs(r[0] - median))
            results[size, name] = (first[0], first[1], median, max(c for _, c, _ in noops), slowest(typical[2]))

    print(f"\nsite.yml convergence, {os.cpu_count()} CPUs, lab hosts {args.rtt_ms:g} ms away; "
          f"no-op: median of {args.repeat}")
    print(f"{'hosts':>5} {'config':<9} {'first s':>8} {'changed':>8} {'no-op s':>8} {'changed':>8}")
    for (size, name), (t1, c1, t2, c2, _) in results.items():
        print(f"{size:>5} {name:<9} {t1:>8.1f} {c1:>8} {t2:>8.1f} {c2:>8}")
    for size in args.sizes:
        p = results[size, "project"]
        for name in (n for n in configs if n != "project"):
            o = results[size, name]
            print(f"{size} hosts, {name} / project: first {o[0] / p[0]:.2f}x, no-op {o[2] / p[2]:.2f}x")
    for (size, name), (*_, tasks) in results.items():
        print(f"slowest tasks of a no-op run, {size} hosts, {name}: "
              + "; ".join(f"{task} {seconds:.1f}s" for task, seconds in tasks))


if __name__ == "__main__":
    main()
