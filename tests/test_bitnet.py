"""The bitnet role on the suite's shared fleet (conftest.py), against the BitNet-shaped fixture
served from the lab's mirror (tests/fixtures/bitnet): one compile per profile, the artifact
reused elsewhere, a build stamp that rebuilds only on a changed input, servers on the mesh
address that answer /health and complete prompts, and failures (wrong checksum, a server that
does not start) that say why and leave the previous model serving. The tests run in order and
leave the fleet converged."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from wrinklefree_lab.clients import check_api, client
from wrinklefree_lab.helpers import (FLEET_HOSTS, ROOT, api_key, changed_hosts, converge, env, fact, http, output, playbook,
                                     run, sh)

# The fleet is one lab: its modules run on one pytest-xdist worker, in file order.
pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("fleet")]

HOSTS = FLEET_HOSTS


def artifacts() -> dict[str, set[str]]:
    """Each host's release tarballs that it built itself (the role's artifacts directory, which
    only a build writes), with their modification times."""
    return {host: set(sh(host, "stat -c '%n %Y' /opt/bitnet/artifacts/*.tar.gz 2>/dev/null || true").stdout.split("\n")) - {""}
            for host in HOSTS}


def built(before: dict[str, set[str]]) -> set[str]:
    """Hosts that built a release since `before` (a tarball there is new or made again)."""
    return {host for host, now in artifacts().items() if now - before[host]}


def physical_cores(host: str) -> int:
    """Distinct (package, core) pairs of the host's /proc/cpuinfo: what the role calls physical cores."""
    pairs = sh(host, "grep -E '^(physical id|core id)' /proc/cpuinfo | paste - - | sort -u").stdout.splitlines()
    return max(len(pairs), 1)


PROFILES = yaml.safe_load((ROOT / "roles/bitnet/vars/main.yml").read_text())["bitnet__profiles"]


def another_build(facts: dict[str, dict]) -> tuple[dict, dict, list[str]]:
    """A build that every host's real CPU runs and that differs from what `auto` chose on each:
    another profile where the CPUs allow one, else the other kernel of the architecture (an
    AVX2-only x86 host has no second profile). Returns the extra vars, the facts expected after
    it, and what llama-server's system_info must then report."""
    flags = set.intersection(*(set(sh(host, "grep -m1 -E '^(flags|Features)' /proc/cpuinfo").stdout.split(":", 1)[1].split())
                               for host in facts))
    arch = {sh(host, "uname -m").stdout.strip() for host in facts}
    chosen = {f["profile"] for f in facts.values()}
    runnable = sorted((spec["rank"], name) for name, spec in PROFILES.items()
                      if spec["arch"] in arch and name not in chosen and flags.issuperset(spec["requires"]))
    if runnable:
        name = runnable[0][1]
        cmake = PROFILES[name]["cmake"]
        info = [f"AVX512 = {int(cmake.get('GGML_AVX512', False))}", f"AVX512_VNNI = {int(cmake.get('GGML_AVX512_VNNI', False))}"]
        return {"bitnet_profile": name}, {"profile": name}, info
    # The other kernel: i2_s and the architecture's lookup-table kernel (tl2 x86, tl1 ARM).
    kernels = {f["kernel"] for f in facts.values()}
    lut = "tl1" if arch == {"aarch64"} else "tl2"
    assert len(kernels) == 1 and kernels <= {"i2_s", lut}, f"hosts of one architecture on kernels {kernels}"
    kernel = lut if kernels == {"i2_s"} else "i2_s"
    info = {"tl2": ["BITNET_X86_TL2 = 1"], "tl1": ["BITNET_ARM_TL1 = 1"],
            "i2_s": ["BITNET_X86_TL2 = 0", "BITNET_ARM_TL1 = 0"]}[kernel]
    return {"bitnet_kernel": kernel}, {"kernel": kernel}, info


def test_site_builds_once_and_serves_on_the_mesh(fleet_first_run):
    # One compile for the one profile of these identical hosts; the others unpacked it.
    assert built(dict.fromkeys(HOSTS, set())) == {HOSTS[0]}
    release = fact(HOSTS[0])["release"]
    for host in HOSTS[1:]:
        # Unpacked from the controller's copy of the builder's tarball.
        assert sh(host, f"test -x /opt/bitnet/releases/{release}/bin/llama-server && readlink /opt/bitnet/current").stdout.strip() \
            == f"/opt/bitnet/releases/{release}"
    assert sh(HOSTS[0], "command -v clang-19").returncode == 0
    for host in HOSTS[1:]:
        assert sh(host, "command -v clang-19 cmake", check=False).stdout == "", f"{host} has a toolchain"
    facts = {host: fact(host) for host in HOSTS}
    assert len({f["release"] for f in facts.values()}) == 1
    for host, f in facts.items():
        flags = sh(host, "grep -m1 '^flags' /proc/cpuinfo").stdout.split()
        assert set(f["cpu_flags"]) <= set(flags) and "avx2" in f["cpu_flags"]
        assert "-DGGML_NATIVE=OFF" in f["cmake_args"] and "-DCMAKE_C_COMPILER=clang-19" in f["cmake_args"]
        version = sh(host, "/opt/bitnet/current/bin/llama-cli --version").stdout
        assert f["commit"] in version and "Clang 19" in version
        # Listening on the mesh address only, never a wildcard.
        listening = sh(host, "ss -Hltn 'sport = :8080'").stdout.split()
        assert f"{f['bind']}:8080" in listening and f["bind"].startswith("10.100.")
        assert http(host, f["bind"], "/health") == {"status": "ok"}
    # Another host completes a prompt over the mesh, with the thread count of physical cores.
    props = http(HOSTS[1], facts[HOSTS[0]]["bind"], "/props")
    assert props["n_threads"] == physical_cores(HOSTS[0]) and props["total_slots"] == 4
    assert "AVX2 = 1" in props["system_info"]
    completion = http(HOSTS[1], facts[HOSTS[0]]["bind"], "/completion", {"prompt": "Hello", "n_predict": 4})
    assert completion["tokens_predicted"] == 4 and len(completion["content"].split()) >= 4
    assert sh(HOSTS[0], "systemctl is-enabled bitnet-server@tiny").stdout.strip() == "enabled"


def test_servers_ask_every_request_but_health_for_the_key(fleet_first_run):
    """A mesh peer (here another host) without the key gets /health and nothing else; the key
    lives in a 0600 file of the service user, never in the env file or on a command line."""
    bind = fact(HOSTS[0])["bind"]
    key = api_key(HOSTS[0])
    assert len(key) >= 16
    assert http(HOSTS[1], bind, "/health", key="") == {"status": "ok"}
    for path, body in (("/completion", {"prompt": "Hi", "n_predict": 2}), ("/props", None), ("/metrics", None)):
        assert http(HOSTS[1], bind, path, body, key="") == {"http_status": 401}, path
        assert http(HOSTS[1], bind, path, body, key="wrong-key-0123456789abcdef") == {"http_status": 401}, path
    assert http(HOSTS[1], bind, "/completion", {"prompt": "Hi", "n_predict": 2})["tokens_predicted"] == 2
    assert sh(HOSTS[0], "stat -c '%a %U' /etc/bitnet/api-key").stdout.split() == ["600", "bitnet"]
    assert key not in sh(HOSTS[0], "cat /etc/bitnet/*.env; ps -eo args").stdout


def test_second_run_and_check_mode_change_nothing(fleet, fleet_second_run, fleet_check_run):
    assert changed_hosts(fleet_second_run) == {}
    assert set(fleet_second_run.stats["ok"]) == {*HOSTS, "localhost"}
    assert changed_hosts(fleet_check_run) == {}
    assert set(fleet_check_run.stats["ok"]) == {fleet.host(1), "localhost"}


def cached_release(fleet, host: str) -> Path:
    # The lab's bitnet_artifact_cache (inventories/lab/group_vars/lab.yml).
    return Path(fleet.inventory) / ".state" / "bitnet-artifacts" / f"{fact(host)['release']}.tar.gz"


def test_a_missing_release_comes_from_the_controller_only_as_its_build_made_it(fleet, fleet_first_run):
    """A host without its release gets it from the controller, not a compiler. The build records
    the tarball's digest; the controller keeps a fetched tarball only once it matches, and
    unpacks a cached one on a host only while it still does."""
    tarball = cached_release(fleet, HOSTS[1])
    recorded = Path(f"{tarball}.sha256").read_text().strip()
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == recorded
    assert sh(HOSTS[0], f"cat /opt/bitnet/artifacts/{tarball.name}.sha256").stdout.strip() == recorded
    assert not list(tarball.parent.glob("*.partial"))
    good = tarball.read_bytes()
    tarball.write_bytes(good + b"\0")
    try:
        sh(HOSTS[1], "systemctl stop bitnet-server@tiny; rm -rf /opt/bitnet/releases /opt/bitnet/current")
        runner = playbook("playbooks/bitnet.yml", fleet)
        assert runner.rc != 0 and set(runner.stats["failures"]) == {HOSTS[1]}
        assert f"but its build recorded {recorded}" in " ".join(output(runner).split())
        assert sh(HOSTS[1], "ls -A /opt/bitnet/releases 2>/dev/null || true").stdout.strip() == ""
    finally:
        tarball.write_bytes(good)
    # A fetch cut off mid-way left a partial file and no cached tarball: the next run fetches again.
    Path(f"{tarball}.partial").write_bytes(good[:100])
    tarball.unlink()
    before = artifacts()
    runner = converge(fleet, "playbooks/bitnet.yml")
    # Fetched again from the host that built it (the first by name), not built again; no other host changed.
    assert built(before) == set() and set(changed_hosts(runner)) == {HOSTS[0], HOSTS[1]}
    assert tarball.read_bytes() == good and not Path(f"{tarball}.partial").exists()
    assert http(HOSTS[1], fact(HOSTS[1])["bind"], "/health") == {"status": "ok"}


def test_benchmark_runs_as_the_service_user(fleet, fleet_first_run):
    """llama-bench, from the release, never runs as root (a wrapper records who ran it)."""
    bench = "/opt/bitnet/current/bin/llama-bench"
    sh(HOSTS[0], f"mv {bench} {bench}.real && printf '#!/bin/sh\\nid -un > /tmp/bench-user\\nexec {bench}.real \"$@\"\\n' > {bench}"
                 f" && chmod 755 {bench} && rm /etc/ansible/facts.d/bitnet.fact")
    try:
        converge(fleet, "playbooks/bitnet.yml", limit=HOSTS[0])
        assert sh(HOSTS[0], "cat /tmp/bench-user").stdout.strip() == "bitnet"
    finally:
        sh(HOSTS[0], f"mv {bench}.real {bench}")
    assert fact(HOSTS[0])["models"][0]["tg"] > 0


def test_changed_profile_rebuilds_once_and_switches_back_without_building(fleet, fleet_first_run):
    """Under the free strategy too (hosts run ahead of each other): the plays of bitnet.yml, not
    the lock step of one play, make the build finish before any host unpacks it."""
    before = fact(HOSTS[0])["release"]
    extravars, expected, system_info = another_build({host: fact(host) for host in HOSTS})
    before_build = artifacts()
    converge(fleet, "playbooks/bitnet.yml", extravars=extravars, envvars=env(ANSIBLE_STRATEGY="free"))
    assert built(before_build) == {HOSTS[0]}
    assert len({sh(host, "cat /opt/bitnet/current/manifest.json").stdout for host in HOSTS}) == 1
    for host in HOSTS:
        f = fact(host)
        assert {k: f[k] for k in expected} == expected and f["release"] != before
        info = http(host, f["bind"], "/props")["system_info"]
        assert all(item in info for item in system_info), (system_info, info)
        # The previous release is kept for a rollback (bitnet_keep_releases: 2).
        assert sh(host, "ls /opt/bitnet/releases").stdout.split() == sorted([before, f["release"]])
    before_build = artifacts()
    converge(fleet, "playbooks/bitnet.yml")
    assert built(before_build) == set()
    assert {fact(host)["release"] for host in HOSTS} == {before}


def test_wrong_checksum_fails_and_keeps_the_model_serving(fleet, fleet_first_run):
    bad = {"name": "tiny", "url": "file:///srv/mirror/models/tiny.gguf", "sha256": "0" * 64, "port": 8080}
    model = sh(HOSTS[0], "sha256sum /var/lib/bitnet/models/tiny.gguf").stdout
    pid = sh(HOSTS[0], "systemctl show -p MainPID --value bitnet-server@tiny").stdout
    runner = playbook("playbooks/bitnet.yml", fleet, extravars={"bitnet_models": [bad]})
    # The first batch (one host) fails and stops the rollout: no later host is tried.
    assert runner.rc != 0 and runner.stats["failures"] == {HOSTS[0]: 1}
    assert "did not match 0000000000000000000000000000000000000000000000000000000000000000" in output(runner)
    assert sh(HOSTS[0], "sha256sum /var/lib/bitnet/models/tiny.gguf").stdout == model
    assert sh(HOSTS[0], "systemctl show -p MainPID --value bitnet-server@tiny").stdout == pid
    assert http(HOSTS[0], fact(HOSTS[0])["bind"], "/health") == {"status": "ok"}


def test_server_that_does_not_start_shows_its_log_and_recovers(fleet, fleet_first_run):
    runner = playbook("playbooks/bitnet.yml", fleet, cmdline=f"--limit {HOSTS[2]}",
                      extravars={"bitnet_server_extra_args": ["--no-such-flag"], "bitnet_health_timeout": 6})
    text = " ".join(output(runner).split())
    assert runner.rc != 0
    assert "bitnet-server@tiny did not answer" in text and "error: unknown argument: --no-such-flag" in text
    # A serving host: back on its last good arguments at once, before any rerun.
    assert f"the change failed its checks on {HOSTS[2]}, which was rolled back" in text
    assert "--no-such-flag" not in sh(HOSTS[2], "cat /etc/bitnet/tiny.env").stdout
    assert http(HOSTS[2], fact(HOSTS[2])["bind"], "/health") == {"status": "ok"}
    converge(fleet, "playbooks/bitnet.yml", cmdline=f"--limit {HOSTS[2]}")
    assert http(HOSTS[2], fact(HOSTS[2])["bind"], "/health") == {"status": "ok"}


def test_a_restart_lost_with_the_controller_is_made_by_the_next_run(fleet, fleet_first_run):
    """The controller dies after a server's arguments are written and before its restart (here:
    the env file written as that run would have): the next run finds the file unchanged, yet
    restarts the server, because what it was started from is recorded."""
    host, slots = HOSTS[2], {"bitnet_server_extra_args": ["--metrics", "--slots"]}
    sh(host, "sed -i 's/ --metrics / --metrics --slots /' /etc/bitnet/tiny.env")
    assert http(host, fact(host)["bind"], "/slots") == {"http_status": 501}
    converge(fleet, "playbooks/bitnet.yml", cmdline=f"--limit {host}", extravars=slots)
    assert [slot["id"] for slot in http(host, fact(host)["bind"], "/slots")] == [0, 1, 2, 3]
    converge(fleet, "playbooks/bitnet.yml", cmdline=f"--limit {host}")
    assert http(host, fact(host)["bind"], "/slots") == {"http_status": 501}


def test_model_from_the_controller_is_checked_before_it_is_copied(fleet, fleet_first_run, tmp_path):
    extra = tmp_path / "extra.gguf"
    run("python3", ROOT / "tests/fixtures/bitnet/make_gguf.py", extra, "--name", "extra", "--seed", "5")
    digest = hashlib.sha256(extra.read_bytes()).hexdigest()
    tiny = {"name": "tiny", "url": "file:///srv/mirror/models/tiny.gguf", "port": 8080,
            "sha256": (fleet.inventory / ".state/mirror/models/tiny.gguf.sha256").read_text()}
    models = [tiny, {"name": "extra", "src": str(extra), "sha256": digest, "port": 8081}]
    limit = f"--limit {HOSTS[0]}"
    converge(fleet, "playbooks/bitnet.yml", extravars={"bitnet_models": models}, cmdline=limit)
    bind = fact(HOSTS[0])["bind"]
    assert http(HOSTS[0], bind, "/props", port=8081)["model_path"] == "/var/lib/bitnet/models/extra.gguf"
    assert sh(HOSTS[0], "sha256sum /var/lib/bitnet/models/extra.gguf").stdout.split()[0] == digest
    models[1]["sha256"] = "f" * 64
    runner = playbook("playbooks/bitnet.yml", fleet, extravars={"bitnet_models": models}, cmdline=limit)
    assert runner.rc != 0 and f"has sha256 {digest}, expected {'f' * 64}" in " ".join(output(runner).split())
    assert sh(HOSTS[0], "sha256sum /var/lib/bitnet/models/extra.gguf").stdout.split()[0] == digest
    # Back to the inventory's models: the extra server is stopped and its configuration removed.
    converge(fleet, "playbooks/bitnet.yml", cmdline=limit)
    assert sh(HOSTS[0], "systemctl is-active bitnet-server@extra", check=False).stdout.strip() == "inactive"
    assert sh(HOSTS[0], "test -e /etc/bitnet/extra.env", check=False).returncode == 1


@pytest.mark.skipif(not os.environ.get("WF_BITNET_SRC"), reason="set WF_BITNET_SRC to a BitNet tree with its submodule")
def test_real_bitnet_builds_once_and_serves(fleet, fleet_first_run):
    """Opt-in: the real BitNet tree (WF_BITNET_SRC, submodule populated; see docs/performance.md for where
    to get it) through the same role and mirror path. With WF_BITNET_MODEL (a GGUF file on the
    controller) the model is served and must answer /health and complete a prompt."""
    mirror = fleet.inventory / ".state" / "mirror" / "real"
    commit = run(ROOT / "tests/fixtures/bitnet/make-mirror.sh", os.environ["WF_BITNET_SRC"], mirror).stdout.strip()
    extravars = {"bitnet_git_url": "file:///srv/mirror/real/bitnet.git", "bitnet_version": commit,
                 "bitnet_submodule_urls": {"3rdparty/llama.cpp": "file:///srv/mirror/real/llama.cpp.git"},
                 "bitnet_models": [], "bitnet_health_timeout": 300}
    model = os.environ.get("WF_BITNET_MODEL")
    if model:
        digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()
        extravars["bitnet_models"] = [{"name": "real", "src": model, "sha256": digest, "port": 8080}]
    before = artifacts()
    converge(fleet, "playbooks/bitnet.yml", extravars=extravars, cmdline=f"--limit {HOSTS[0]},{HOSTS[1]}")
    assert built(before) == {HOSTS[0]}
    for host in HOSTS[:2]:
        assert commit[:7] in fact(host)["commit"]
        assert "clang version 19" in sh(host, "/opt/bitnet/current/bin/llama-cli --version 2>&1").stdout
    if model:
        completion = http(HOSTS[1], fact(HOSTS[1])["bind"], "/completion", {"prompt": "The capital of France", "n_predict": 8})
        assert completion["content"]
        # The client checks of test_clients.py, through the front door, on the real servers.
        converge(fleet, "playbooks/frontdoor.yml", extravars={"frontdoor_model": "real", "frontdoor_exclude_hosts": [HOSTS[2]]})
        check_api(client(f"http://{fleet.address(1)}:8000/v1", fleet.frontdoor_key), "real")
