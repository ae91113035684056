"""Shared helpers for the test suite: paths, environment, and running playbooks."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import ansible_runner
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
CONTAINERS_CONF = ROOT / "tests" / "lab" / "containers.conf"


def env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the venv first, no colour, the lab's podman config."""
    result = dict(os.environ)
    result.update(
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{result.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        NO_COLOR="1",
        PY_COLORS="0",
        CONTAINERS_CONF=str(CONTAINERS_CONF),
    )
    result.update(extra)
    return result


def run(*args: str | os.PathLike, cwd: Path = ROOT, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with the suite's environment, capturing text output (stderr merged into
    stdout unless `stderr=subprocess.PIPE` is given)."""
    proc = subprocess.run(
        [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args],
        cwd=cwd, env=kwargs.pop("env", env()), text=True,
        stdout=subprocess.PIPE, stderr=kwargs.pop("stderr", subprocess.STDOUT), check=False, **kwargs,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout[-6000:]}")
    return proc


def _runner(inventory: str | os.PathLike, cmdline: str, **kwargs) -> ansible_runner.Runner:
    """ansible-runner with this repository as project, the suite's environment and no console output;
    a lab's shared fact cache (labs.Lab `facts`) unless the caller sets the environment or cache."""
    facts = getattr(inventory, "facts", None)
    if facts and "envvars" not in kwargs and "fact_cache_type" not in kwargs:
        kwargs.update(fact_cache_type="ansible.cfg", envvars=env(ANSIBLE_CACHE_PLUGIN_CONNECTION=str(facts)))
    return ansible_runner.run(
        # Under pytest's temporary directory when the suite runs (conftest.py), which pytest rotates.
        private_data_dir=tempfile.mkdtemp(prefix="wf-runner-", dir=os.environ.get("WF_RUNNER_TMP")),
        project_dir=str(ROOT),
        inventory=os.fspath(inventory),
        cmdline=cmdline or None,
        envvars=kwargs.pop("envvars", None) or env(),
        quiet=True,
        rotate_artifacts=1,
        **kwargs,
    )


def playbook(path: str, inventory: str | os.PathLike, *, extravars: dict | None = None,
             cmdline: str = "", **kwargs) -> ansible_runner.Runner:
    """Run a playbook of this repository and return the finished runner (kwargs go to
    ansible_runner.run, e.g. an event_handler that acts while the play runs).

    Callers read `runner.stats` (changed/failures/dark per host) and `runner.events`, never the
    text output, which is only kept for messages.
    """
    return _runner(inventory, cmdline, playbook=str(ROOT / path), extravars=extravars or {}, **kwargs)


def adhoc(module: str, args: str, inventory: str | os.PathLike, *, pattern: str = "all",
          cmdline: str = "") -> ansible_runner.Runner:
    """Run one module on hosts (an ad-hoc command) and return the finished runner."""
    return _runner(inventory, cmdline, module=module, module_args=args, host_pattern=pattern)


def output(runner: ansible_runner.Runner) -> str:
    """The runner's text output, for messages and assertions on error wording."""
    return runner.stdout.read()


def changed_hosts(runner: ansible_runner.Runner) -> dict[str, int]:
    """Hosts with a non-zero changed count in the play recap."""
    return {host: n for host, n in (runner.stats or {}).get("changed", {}).items() if n}


RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap_changed(text: str) -> dict[str, int]:
    """Changed counts from a PLAY RECAP printed by a tool we do not drive through ansible-runner
    (Molecule)."""
    return {m.group(1): int(m.group(3)) for m in RECAP.finditer(text)}


# The suite's shared three-host lab (conftest.py's fleet fixture): its hosts are named as
# playbooks/provision.yml names the servers of layer base in project wf-fleet, and its Cloud
# servers carry that project's label, so provision.yml can scale the layer down.
FLEET_PROJECT = "wf-fleet"
FLEET_PREFIX = f"{FLEET_PROJECT}-base-"
FLEET_HOSTS = tuple(f"{FLEET_PREFIX}{index}" for index in (1, 2, 3))
# The second lab (conftest.py's side_lab), for test_faults and then test_node_pool.
SIDE_PREFIX = "wf-side-"
# The node pool's layers alone, for the side lab's pool tests (conftest.py, pool_converged).
NODE_POOL_PLAYBOOK = "tests/playbooks/node_pool.yml"


def sh(host: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a command on a lab host through podman (the test's own view, not Ansible's)."""
    return subprocess.run(["podman", "exec", host, "sh", "-c", command], env=env(), check=check,
                          capture_output=True, text=True)


def sh_out(host: str, command: str) -> str:
    """A command's standard output on a lab host; it must succeed."""
    return sh(host, command).stdout


def mesh_registry(lab) -> dict:
    """The lab's mesh registry as the wireguard role wrote it (wireguard-addresses.yml)."""
    return yaml.safe_load((Path(lab.inventory) / "wireguard-addresses.yml").read_text())


def fact(host: str) -> dict:
    """The bitnet role's local fact on a host (its release, profile, bind address, models, rates)."""
    return json.loads(sh_out(host, "cat /etc/ansible/facts.d/bitnet.fact"))


def fetch(url: str, key: str = "") -> str:
    """A shell command that prints the body of GET `url`, run on a lab host (its own view)."""
    headers = f", headers={{'Authorization': 'Bearer {key}'}}" if key else ""
    return (f"python3 -c \"import urllib.request; "
            f"print(urllib.request.urlopen(urllib.request.Request('{url}'{headers})).read().decode())\"")


def stats(edge: str) -> dict[tuple[str, str], dict]:
    """HAProxy's statistics on the edge host: (proxy, server) -> the CSV row."""
    text = sh(edge, fetch("http://127.0.0.1:8404/stats;csv")).stdout
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {(row["pxname"], row["svname"]): row for row in rows}


def metric(text: str, name: str) -> int:
    return int(float(next(line.split()[1] for line in text.splitlines() if line.startswith(name + " "))))


HTTP = ("import json, sys, urllib.error, urllib.request; "
        "data = sys.argv[2].encode() if sys.argv[2] else None; "
        "headers = {'Authorization': 'Bearer ' + sys.argv[3]} if sys.argv[3] else {}\n"
        "try: print(urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=data, headers=headers), timeout=10).read().decode())\n"
        "except urllib.error.HTTPError as e: print(json.dumps({'http_status': e.code}))")


def api_key(host: str) -> str:
    """The base servers' key, as `host` holds it for its own servers (the lab sets one)."""
    return sh(host, "cat /etc/bitnet/api-key 2>/dev/null || true").stdout.strip()


def http(host: str, address: str, path: str, body: dict | None = None, port: int = 8080, key: str | None = None) -> dict:
    """A request from `host` to a server on `address` (the mesh, which the controller is not on),
    with the servers' key unless `key` says otherwise ("" for none); an HTTP error as {http_status}."""
    url = f"http://{address}:{port}{path}"
    key = api_key(host) if key is None else key
    proc = subprocess.run(["podman", "exec", host, "python3", "-c", HTTP, url, json.dumps(body) if body else "", key],
                          env=env(), check=True, capture_output=True, text=True)
    return json.loads(proc.stdout)


def converge(lab, path: str = "playbooks/site.yml", **kwargs) -> ansible_runner.Runner:
    """Run a playbook on a lab; it must succeed."""
    runner = playbook(path, lab, **kwargs)
    assert runner.rc == 0, output(runner)[-6000:]
    return runner


def download_wheels(dest: Path, *args: str | os.PathLike) -> None:
    """Wheels only (no sdist to build) into `dest`, with this suite's pip: for hosts and venvs
    that have no PyPI. `args` are pip download's (requirements, constraints, --python-version)."""
    run(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", dest, *args)


def render(tmp_path: Path, template: str, cases: list[dict]) -> list[dict]:
    """sky_tasks/TEMPLATE rendered by the roles' own templating (tests/playbooks/render_sky_tasks.yml)
    for each case's variables, loaded."""
    cases_file = tmp_path / "cases.json"
    cases_file.write_text(json.dumps({"render_cases": [{"template": template, "vars": c} for c in cases],
                                      "render_dir": str(tmp_path)}))
    run("ansible-playbook", "-i", ROOT / "inventories" / "controller", "tests/playbooks/render_sky_tasks.yml", f"-e@{cases_file}")
    return [yaml.safe_load((tmp_path / f"{i}.yaml").read_text()) for i in range(len(cases))]


def at_task_start(task: str, action) -> callable:
    """An ansible-runner event handler that calls action(host) once, when `task` (its name up to
    the templated part) starts on its first host."""
    fired = threading.Event()

    def handler(event: dict) -> bool:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_start" and data.get("task", "").startswith(task) and not fired.is_set():
            fired.set()
            action(data["host"])
        return True  # keep the event

    handler.fired = fired
    return handler


def kill_playbook(*markers: str) -> None:
    """The controller dies: SIGKILL to the process group of the ansible-playbook (this test's own
    child, found by its command line) and its workers, at once; ansible-runner's cancel is only
    polled every few seconds, time enough for the play to reach its handlers."""
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        command = " ".join(args)
        if entry.name.isdigit() and any(a.endswith("ansible-playbook") for a in args[:2]) and all(m in command for m in markers):
            group = os.getpgid(int(entry.name))
            # ansible-runner starts it in a session of its own (pexpect): never the suite's group.
            assert group != os.getpgid(0)
            os.killpg(group, signal.SIGKILL)
