"""Times warmcache ls, stats and gc over large tiers; see bench-large.sh."""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

release, moto, sizes = sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3:]]
warmcache, fill = os.path.join(release, "warmcache"), os.path.join(release, "examples", "fill")
env = dict(os.environ, WARMCACHE_SECRET="a benchmark secret of at least thirty-two bytes",
           AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret")
RUNS = 3


def timed(args):
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def commands(base):
    return {
        "ls": base + ["ls", "--json"],
        "stats": base + ["stats", "--json"],
        # A limit above the usage: the scan gc makes, without evicting.
        "gc": base + ["gc", "--max-size", "1TB"],
    }


def bench(kind, count, tier_arg, target, extra=()):
    started = time.perf_counter()
    subprocess.run([fill, kind, target, str(count), *extra], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    filled = time.perf_counter() - started
    rows = {}
    for name, args in commands(tier_arg).items():
        rows[name] = timed(args)
    print(f"| {kind} | {count:,} | {rows['ls']:.2f} s | {rows['stats']:.2f} s | "
          f"{rows['gc']:.2f} s | (filled in {filled:.0f} s) |", flush=True)
    return rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


print("| tier | entries | ls | stats | gc (no eviction) | |")
print("|---|---|---|---|---|---|")
scratch = tempfile.mkdtemp(prefix="warmcache-large-")
port = free_port()
server = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except Exception:
            time.sleep(0.1)
    for count in sizes:
        for kind, tier in (("fs", "fs={d}/files"), ("redb", "redb={d}/cache.redb")):
            d = os.path.join(scratch, f"{kind}-{count}")
            os.makedirs(d)
            target = os.path.join(d, "files" if kind == "fs" else "cache.redb")
            base = [warmcache, "--cache-dir", d, "--tiers", tier.format(d=d),
                    "--secret-env", "WARMCACHE_SECRET"]
            bench(kind, count, base, target)
            shutil.rmtree(d)
        remote = max(count // 50, 1)
        bucket = f"large-{remote}"
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT"))
        d = os.path.join(scratch, f"s3-{remote}")
        os.makedirs(d)
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(f'[[tiers]]\nkind = "s3"\nurl = "s3://{bucket}/cache"\n'
                    f'endpoint = "{endpoint}"\nregion = "us-east-1"\nallow_http = true\n')
        base = [warmcache, "--config", os.path.join(d, "config.toml"), "--cache-dir", d,
                "--secret-env", "WARMCACHE_SECRET"]
        bench("s3", remote, base, f"s3://{bucket}/cache", (endpoint,))
finally:
    server.terminate()
    server.wait()
    shutil.rmtree(scratch, ignore_errors=True)
