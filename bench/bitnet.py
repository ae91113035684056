#!/usr/bin/env python3
"""Benchmark: the bitnet role's per-profile artifact against a -march=native build and f16.

In one invocation, on a lab of two hosts of its own and a real BitNet tree:
  1. builds: the role's cold build on host 1 (the profile `auto` picks), the same release
     reaching host 2 from the controller's cache, and a `bitnet_profile=native` build;
  2. a random model of a published BitNet shape (utils/generate-dummy-bitnet-model.py in f16,
     then llama-quantize to I2_S with the role's own artifact);
  3. llama-bench prompt (pp) and decode (tg) tokens/s: artifact + I2_S, native + I2_S, artifact + f16;
  4. the machine's memory read bandwidth, and decode as a fraction of its bound
     (bandwidth / model bytes: every decoded token reads every weight once).
Prints the figures and the ratios (artifact / native must be within 5%).

    .venv/bin/python bench/bitnet.py --bitnet-src DIR --model-dir DIR --python PY [--size 1B]

--bitnet-src: a BitNet tree with 3rdparty/llama.cpp populated (not part of this repository).
--model-dir: may start empty. Receives config.json (BitnetForCausalLM in the shape of --size, written
  every run: the generator reads the layer count from it before it applies --model-size; the
  embedding has 32002 rows), tokenizer.model (sentencepiece, trained on this machine's Python
  sources) and the models, each of these made only when absent.
--python: an interpreter with torch, numpy, sentencepiece and BitNet's gguf-py, for the generator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from wrinklefree_lab.dummy_model import SHAPES, dummy_model
from wrinklefree_lab.helpers import output, playbook, run, sh_out
from wrinklefree_lab.labs import Lab

ROOT = Path(__file__).resolve().parent.parent


BANDWIDTH_C = r"""
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
/* Best-of-N read bandwidth of a buffer larger than the caches, summed by all threads. */
int main(int argc, char ** argv) {
    size_t n = (size_t) atoll(argv[1]) / 8;
    int reps = atoi(argv[2]);
    uint64_t * a = aligned_alloc(64, n * 8), total = 0;
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) a[i] = i;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t acc = 0;
        double t0 = omp_get_wtime();
        #pragma omp parallel for reduction(+:acc)
        for (size_t i = 0; i < n; i++) acc += a[i];
        double gbs = n * 8 / (omp_get_wtime() - t0) / 1e9;
        best = gbs > best ? gbs : best;
        total += acc;
    }
    printf("%.3f %llu\n", best, (unsigned long long) total);
    return 0;
}
"""


def converge(lab: Lab, extravars: dict, limit: str) -> tuple[float, float]:
    """Wall seconds of playbooks/bitnet.yml and seconds of its compile task (0 if none ran)."""
    start = time.perf_counter()
    runner = playbook("playbooks/bitnet.yml", lab, extravars=extravars, cmdline=f"--limit {limit}")
    seconds = time.perf_counter() - start
    if runner.rc != 0:
        raise SystemExit(f"bitnet.yml failed:\n{output(runner)[-4000:]}")
    compile_s = sum(e["event_data"].get("duration", 0) for e in runner.events
                    if e["event"] == "runner_on_ok" and e["event_data"].get("task") == "BitNet | compile")
    return seconds, compile_s


def releases(host: str) -> dict[str, str]:
    """Profile to release directory on a host, from each release's manifest."""
    result = {}
    for manifest in sh_out(host, "ls /opt/bitnet/releases/*/manifest.json").split():
        result[json.loads(sh_out(host, f"cat {manifest}"))["profile"]] = str(Path(manifest).parent)
    return result


def bench(host: str, release: str, model: str, threads: int, reps: int) -> dict[str, float]:
    records = json.loads(sh_out(host, f"{release}/bin/llama-bench -m {model} -p 128 -n 32 -t {threads} -r {reps} -o json 2>/dev/null"))
    return {"pp": next(r["avg_ts"] for r in records if r["n_prompt"]), "tg": next(r["avg_ts"] for r in records if r["n_gen"])}


def bandwidth(threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        source, binary = Path(tmp) / "bw.c", Path(tmp) / "bw"
        source.write_text(BANDWIDTH_C)
        subprocess.run(["cc", "-O3", "-march=native", "-fopenmp", "-o", binary, source], check=True)
        out = subprocess.run([binary, str(2 << 30), "5"], check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": str(threads)}).stdout
    return float(out.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bitnet-src", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--python", required=True)
    parser.add_argument("--size", default="1B", choices=list(SHAPES), help="a shape of generate-dummy-bitnet-model.py")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    f16 = dummy_model(args.model_dir, args.size, args.python, args.bitnet_src)

    run("ansible-playbook", "-i", ROOT / "inventories" / "controller", "playbooks/lab/image.yml")
    lab = Lab(Path(tempfile.mkdtemp(prefix="wf-bench-bitnet-")), "wf-bench-bn-", "wrinklefree-bench-bn", "10.213.10.0/24")
    host1, host2 = lab.host(1), lab.host(2)
    try:
        lab.up(2)
        if playbook("playbooks/base.yml", lab).rc != 0:
            raise SystemExit("base.yml failed")
        mirror = lab.inventory / ".state" / "mirror"
        commit = run(ROOT / "tests/fixtures/bitnet/make-mirror.sh", args.bitnet_src, mirror / "real").stdout.strip()
        shutil.copy(f16, mirror / "models" / "model.f16.gguf")
        real = {"bitnet_git_url": "file:///srv/mirror/real/bitnet.git", "bitnet_version": commit,
                "bitnet_submodule_urls": {"3rdparty/llama.cpp": "file:///srv/mirror/real/llama.cpp.git"},
                "bitnet_models": []}
        cold = converge(lab, real, host1)
        reuse = converge(lab, real, host2)
        native = converge(lab, {**real, "bitnet_profile": "native"}, host1)
        built = releases(host1)
        profile = next(p for p in built if p != "native")
        artifact, native_release = built[profile], built["native"]
        sh_out(host1, f"{artifact}/bin/llama-quantize /srv/mirror/models/model.f16.gguf /var/tmp/model.i2_s.gguf I2_S 1 >/dev/null 2>&1")
        sizes = {name: int(sh_out(host1, f"stat -c %s {path}"))
                 for name, path in (("i2_s", "/var/tmp/model.i2_s.gguf"), ("f16", "/srv/mirror/models/model.f16.gguf"))}
        results = {
            f"{profile} artifact, I2_S": (bench(host1, artifact, "/var/tmp/model.i2_s.gguf", args.threads, args.reps), sizes["i2_s"]),
            "-march=native, I2_S": (bench(host1, native_release, "/var/tmp/model.i2_s.gguf", args.threads, args.reps), sizes["i2_s"]),
            f"{profile} artifact, f16": (bench(host1, artifact, "/srv/mirror/models/model.f16.gguf", args.threads, args.reps), sizes["f16"]),
        }
    finally:
        lab.down()
    gbs = bandwidth(args.threads)

    print(f"BitNet {commit[:7]} (tree {args.bitnet_src.name}), {args.size} shape, {os.cpu_count()} CPUs, "
          f"{args.threads} threads, llama-bench -p 128 -n 32 -r {args.reps}")
    print(f"build: cold {cold[0]:.1f} s (compile {cold[1]:.1f} s) | artifact reuse on a 2nd host {reuse[0]:.1f} s "
          f"(compile {reuse[1]:.1f} s) | reuse / cold {reuse[0] / cold[0]:.2f} | native build {native[0]:.1f} s")
    print(f"memory read bandwidth: {gbs:.1f} GB/s")
    print(f"{'binary, model':<34} {'MB':>7} {'pp t/s':>8} {'tg t/s':>8} {'tg bound':>9} {'tg/bound':>9}")
    for name, (rates, size) in results.items():
        bound = gbs * 1e9 / size
        print(f"{name:<34} {size / 1e6:>7.0f} {rates['pp']:>8.2f} {rates['tg']:>8.2f} {bound:>9.2f} {rates['tg'] / bound:>9.2f}")
    (a, _), (n, _), (f, _) = results.values()
    print(f"artifact / native: pp {a['pp'] / n['pp']:.3f}, tg {a['tg'] / n['tg']:.3f} "
          f"({'within' if min(a['pp'] / n['pp'], a['tg'] / n['tg']) >= 0.95 else 'NOT within'} 5%)")
    print(f"I2_S / f16 decode: {a['tg'] / f['tg']:.2f}x")


if __name__ == "__main__":
    main()
