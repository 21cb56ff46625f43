#!/usr/bin/env python3
"""Whole-process warm starts: `warmcache run` (verifying every load, and with
verify_every_load = false) against `wasmtime run -C cache=y` and against loading a precompiled
file with `wasmtime run --allow-precompiled`, the floor.

    scripts/bench-warm-run.py WARMCACHE WASMTIME ROUNDS MODULE [ARGS...]

Each command is warmed first, then run ROUNDS times, the commands interleaved round by round.
Prints one markdown row per command: median wall time, peak resident memory (from wait4), and
both against the floor. Called by scripts/bench-warm-run.sh, which builds and installs what it
needs.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time


def run(argv, env):
    """Runs argv with output discarded; returns (seconds, peak RSS in KiB)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    start = time.perf_counter()
    pid = os.posix_spawn(
        argv[0],
        argv,
        env,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 1),
            (os.POSIX_SPAWN_DUP2, devnull, 2),
        ],
    )
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(argv)} exited with {code}")
    return elapsed, usage.ru_maxrss


def main():
    warmcache, wasmtime, rounds, module, *args = sys.argv[1:]
    rounds = int(rounds)
    work = tempfile.mkdtemp(prefix="warmcache-bench-")
    base = dict(os.environ)
    for key in list(base):
        if key.startswith("WARMCACHE_"):
            del base[key]
    wc_env = dict(base, XDG_CACHE_HOME=f"{work}/wc", XDG_CONFIG_HOME=f"{work}/config")
    wc_once = dict(wc_env, WARMCACHE_VERIFY_EVERY_LOAD="false")
    wc_sealed = dict(wc_env, WARMCACHE_SEALED_LOADS="true")
    # Loads from a bucket (object_store's file://, so the network is not measured): every load
    # verified under the fleet's MAC secret, or as a signed tier (Ed25519) by a producer's key.
    secret = "a benchmark secret of at least thirty-two bytes"
    wc_mac = dict(
        wc_env, WARMCACHE_TIERS=f"s3=file://{work}/bucket-mac", WARMCACHE_SECRET_ENV="BENCH_SECRET",
        BENCH_SECRET=secret,
    )
    key_file = f"{work}/producer.pem"
    subprocess.run([warmcache, "keygen", key_file], check=True, env=wc_env, stdout=subprocess.DEVNULL)
    with open(key_file) as f:
        pem = f.read()
    wc_signed = dict(
        wc_env, WARMCACHE_TIERS=f"s3=file://{work}/bucket-signed",
        WARMCACHE_SIGNING_KEY_ENV="BENCH_KEY", BENCH_KEY=pem,
    )
    wt_env = dict(base, HOME=f"{work}/home", XDG_CACHE_HOME=f"{work}/wasmtime-cache")
    cwasm = f"{work}/module.cwasm"
    subprocess.run([wasmtime, "compile", module, "-o", cwasm], check=True, env=wt_env)
    commands = {
        "warmcache run (verify every load)": ([warmcache, "run", module, "--", *args], wc_env),
        "warmcache run (verify_every_load = false)": (
            [warmcache, "run", module, "--", *args],
            wc_once,
        ),
        "warmcache run (sealed_loads = true)": (
            [warmcache, "run", module, "--", *args],
            wc_sealed,
        ),
        "warmcache run (bucket only, MAC)": ([warmcache, "run", module, "--", *args], wc_mac),
        "warmcache run (bucket only, signed)": (
            [warmcache, "run", module, "--", *args],
            wc_signed,
        ),
        "wasmtime run -C cache=y": ([wasmtime, "run", "-C", "cache=y", module, *args], wt_env),
        "wasmtime run --allow-precompiled (floor)": (
            [wasmtime, "run", "--allow-precompiled", cwasm, *args],
            wt_env,
        ),
    }
    # Warm: compile into each cache; after a second, the verified-files record can be taken
    # (files younger than that are not trusted), then one more warm run of each.
    for argv, env in commands.values():
        run(argv, env)
    time.sleep(1.2)
    for argv, env in commands.values():
        run(argv, env)
    times = {name: [] for name in commands}
    peaks = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (argv, env) in commands.items():
            seconds, peak = run(argv, env)
            times[name].append(seconds)
            peaks[name].append(peak)
    floor_name = "wasmtime run --allow-precompiled (floor)"
    floor = statistics.median(times[floor_name])
    floor_peak = statistics.median(peaks[floor_name])
    name = os.path.basename(module)
    print(f"| {name} | command | median | vs floor | peak RSS | vs floor |")
    print("|---|---|---|---|---|---|")
    for label in commands:
        t = statistics.median(times[label])
        p = statistics.median(peaks[label])
        print(
            f"| {name} | {label} | {t * 1e3:.1f} ms | {t / floor:.2f}x | "
            f"{p / 1024:.0f} MiB | {p / floor_peak:.2f}x |"
        )
    subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
