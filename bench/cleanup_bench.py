"""Benchmark the Cloudcube cleanup against its floors and its peers (run by hand).

    .venv/bin/python bench/cleanup_bench.py            # 20,000 objects, 13,000 expired
    .venv/bin/python bench/cleanup_bench.py --list-ms 0 --delete-ms 0   # no latency model
    .venv/bin/python bench/cleanup_bench.py -n 5000 -e 2500 --memory-sizes 10000

One local S3 server (moto's, in this process) is seeded through its backend
with N objects in the clips' folder of the cube (E of them older than the
retention period) plus another cube's old objects that must survive. The
contenders talk to it through a latency proxy (devstack/latency_proxy.py) that
models real S3: --list-ms per ListObjectsV2 page (default 50 ms) and
--delete-ms per 1,000-key DeleteObjects (default 500 ms). Before each contender
the same data is seeded again, then it runs as its own process over HTTP:

- list-only: one ListObjectsV2 pass over the clips' folder (the list floor);
- delete-only: DeleteObjects of the E expired keys, known in advance, one
  1,000-key request at a time (the delete floor: what deleting costs alone);
- project: viral_clips.cleanup.run_cleanup;
  (these three alternate --repeat times; the medians are compared, and the
  goal is project <= 1.2 x max(list floor, delete floor))
- naive (--naive): list, then one DeleteObject call per expired key;
- rclone (--rclone): `rclone delete --min-age` (when rclone is installed).

Then the project's peak memory (the process's RSS high-water mark, VmHWM) at
each of --memory-sizes listed objects, without the latency model. Ratios are
against the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# --baseline TREE runs the "project" contender from another checkout (e.g.
# `git archive <commit> | tar -x -C /tmp/before`), against the same server.
CODE_ROOT = Path(os.environ.get("BENCH_CODE_ROOT") or ROOT)
sys.path.insert(0, str(CODE_ROOT))

BUCKET = "bench-bucket"
CUBE = "benchcube"
OTHER_CUBE = "benchcube2"  # a sibling cube sharing the prefix's first letters
RETENTION_DAYS = 5


# --- the contenders, each run in a child process ---------------------------
def is_expired(i: int, n: int, expired: int) -> bool:
    """Exactly `expired` of `n` objects, spread evenly (the seed and delete-only agree)."""
    return (i * expired) % n < expired


def clip_key(i: int) -> str:
    return f"{CUBE}/public/clips/{i:07d}.mp4"


def child_main(mode: str) -> None:
    import django

    django.setup()
    from django.conf import settings

    from viral_clips.s3 import cloudcube_client

    client = cloudcube_client()
    requests: dict[str, int] = {}

    seconds: dict[str, float] = {}
    call_started: dict[int, float] = {}  # by thread: the cleanup deletes from several

    def count(model, **kwargs) -> None:
        requests[model.name] = requests.get(model.name, 0) + 1
        call_started[threading.get_ident()] = time.perf_counter()

    def timed(model, **kwargs) -> None:
        elapsed = time.perf_counter() - call_started.pop(threading.get_ident())
        seconds[model.name] = seconds.get(model.name, 0.0) + elapsed

    client.meta.events.register("before-call.s3", count)
    client.meta.events.register("after-call.s3", timed)
    bucket = settings.CLOUDCUBE.bucket
    prefix = f"{settings.CLOUDCUBE.prefix}public/clips/"  # the cleanup's scope
    started = time.perf_counter()
    if mode == "delete-only":
        n, e = int(os.environ["BENCH_OBJECTS"]), int(os.environ["BENCH_EXPIRED"])
        keys = [clip_key(i) for i in range(n) if is_expired(i, n, e)]
        for start in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
            )
        result = {"deleted": len(keys)}
    elif mode == "list-only":
        listed = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}
        ):
            listed += len(page.get("Contents", ()))
        result = {"listed": listed}
    elif mode == "project":
        from viral_clips.cleanup import run_cleanup

        report = run_cleanup(RETENTION_DAYS)
        result = {"listed": report.objects_scanned, "deleted": report.files_deleted}
    elif mode == "naive":
        cutoff = datetime.now(UTC) - timedelta(days=RETENTION_DAYS)
        expired, listed = [], 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                listed += 1
                if obj["LastModified"] < cutoff:
                    expired.append(obj["Key"])
        for key in expired:
            client.delete_object(Bucket=bucket, Key=key)
        result = {"listed": listed, "deleted": len(expired)}
    else:
        raise SystemExit(f"unknown mode {mode}")
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                **result,
                "wall": wall,
                "requests": requests,
                "request_seconds": seconds,
                # What Heroku counts against the quota is resident memory.
                "rss_peak_mb": _vm_hwm_mb(),
            }
        )
    )


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the parent: server, seeding, timing -----------------------------------
def seed(server, n: int, other: int, expired: int | None = None) -> None:
    server.clear(BUCKET)
    now = datetime.now(UTC)
    old = now - timedelta(days=RETENTION_DAYS + 3)
    new = now - timedelta(days=1)
    body = b"v" * 1024
    expired = n // 2 if expired is None else expired
    for i in range(n):
        when = old if is_expired(i, n, expired) else new
        server.put(BUCKET, clip_key(i), body, when)
    for i in range(other):
        server.put(BUCKET, f"{OTHER_CUBE}/public/clips/{i:05d}.mp4", body, old)


def check_other_cube(server, other: int, mode: str) -> None:
    survivors = sum(1 for k in server.keys(BUCKET) if k.startswith(f"{OTHER_CUBE}/"))
    assert survivors == other, f"{mode} touched the other cube!"


def run_child(mode: str, env: dict[str, str]) -> dict:
    code_root = ROOT
    if mode == "baseline":
        mode, code_root = "project", Path(env["BENCH_BASELINE"])
        env = dict(env, BENCH_CODE_ROOT=str(code_root))
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", mode],
        env=env,
        cwd=code_root,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_rclone(server, env: dict[str, str]) -> dict | None:
    rclone = shutil.which("rclone")
    if not rclone:
        return None
    # rclone refuses AWS_CA_BUNDLE with its own HTTP transport; the server is plain HTTP.
    rclone_env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
    rclone_env.update(
        RCLONE_CONFIG_BENCH_TYPE="s3",
        RCLONE_CONFIG_BENCH_PROVIDER="Other",
        RCLONE_CONFIG_BENCH_ENDPOINT=server.endpoint_url,
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="bench",
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="bench",
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE="true",
    )
    started = time.perf_counter()
    out = subprocess.run(
        [
            rclone, "delete", f"bench:{BUCKET}/{CUBE}/",
            "--min-age", f"{RETENTION_DAYS}d", "--dump", "headers", "--stats", "0",
        ],
        env=rclone_env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if out.returncode != 0:
        print(f"rclone failed: {out.stderr[-2000:]}", file=sys.stderr)
        return None
    requests: dict[str, int] = {}
    for line in out.stderr.splitlines():
        # --dump headers logs each request line: "<date> <time> DEBUG : GET /... HTTP/1.1".
        _, _, rest = line.partition("DEBUG : ")
        method = rest.split(" ", 1)[0]
        if rest.endswith("HTTP/1.1") and method in {"GET", "HEAD", "DELETE", "POST", "PUT"}:
            requests[method] = requests.get(method, 0) + 1
    return {"wall": wall, "requests": requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--objects", type=int, default=20_000)
    parser.add_argument("-e", "--expired", type=int, default=13_000)
    parser.add_argument("--list-ms", type=float, default=50, help="latency a list page")
    parser.add_argument(
        "--delete-ms", type=float, default=500, help="latency a 1,000-key DeleteObjects"
    )
    parser.add_argument(
        "--other-ms", type=float, default=20, help="latency any other request (naive's deletes)"
    )
    parser.add_argument("--other-cube-objects", type=int, default=1_000)
    parser.add_argument(
        "--memory-sizes",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[10_000, 100_000],
    )
    parser.add_argument("--naive", action="store_true", help="also one DeleteObject per key")
    parser.add_argument("--rclone", action="store_true", help="also rclone (when installed)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each floor")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout whose cleanup runs as a 4th contender (same migrations or older)",
    )
    args = parser.parse_args()

    import logging

    from devstack.latency_proxy import S3LatencyProxy
    from devstack.s3_server import LocalS3Server

    server = LocalS3Server().start()
    proxy = S3LatencyProxy(
        server.port,
        list_ms=args.list_ms,
        delete_ms_per_1000=args.delete_ms,
        other_ms=args.other_ms,
    ).start()
    # moto's server is not thread-safe: rclone's concurrent deletes while it
    # lists make it log 500s (which rclone retries). Keep the report readable.
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server.create_bucket(BUCKET)
    workdir = Path(tempfile.mkdtemp(prefix="koolclips-bench-"))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_DEBUG="1",
        DJANGO_LOG_LEVEL="WARNING",
        DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
        CLOUDCUBE_URL=proxy.cloudcube_url(BUCKET, CUBE),
        BENCH_OBJECTS=str(args.objects),
        BENCH_EXPIRED=str(args.expired),
        CLOUDCUBE_ACCESS_KEY_ID="bench",
        CLOUDCUBE_SECRET_ACCESS_KEY="bench",
        REDIS_URL="redis://127.0.0.1:1/0",  # unused by the cleanup
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)

    n, e, other = args.objects, args.expired, args.other_cube_objects
    print(
        f"{n} objects in {CUBE!r}/public/clips/ ({e} expired), {other} old objects in"
        f" {OTHER_CUBE!r}; latency model: {args.list_ms:g} ms a list page,"
        f" {args.delete_ms:g} ms a 1,000-key DeleteObjects, {args.other_ms:g} ms other"
    )
    results: dict[str, dict] = {}
    # The floors and the project alternate --repeat times and report medians:
    # on a shared machine one listing of the same data varied by 40% here.
    runs: dict[str, list[dict]] = {"list-only": [], "delete-only": [], "project": []}
    if args.baseline:
        env["BENCH_BASELINE"] = str(args.baseline.resolve())
        runs["baseline"] = []
    for _ in range(args.repeat):
        for mode in runs:
            seed(server, n, other, e)
            runs[mode].append(run_child(mode, env))
            check_other_cube(server, other, mode)
    for mode, samples in runs.items():
        results[mode] = sorted(samples, key=lambda r: r["wall"])[len(samples) // 2]
        walls = ", ".join(f"{r['wall']:.2f}" for r in samples)
        print(f"{mode} runs (s): {walls}")
    assert results["project"]["deleted"] == e, results["project"]
    if args.naive:
        seed(server, n, other, e)
        results["naive"] = run_child("naive", env)
        check_other_cube(server, other, "naive")
    if args.rclone:
        seed(server, n, other, e)
        rclone = run_rclone(server, env)
        if rclone:
            results["rclone"] = rclone
            check_other_cube(server, other, "rclone")

    base = results["project"]["wall"]
    list_floor = results["list-only"]["wall"]
    delete_floor = results["delete-only"]["wall"]
    limit = max(list_floor, delete_floor)
    print(f"\n{'contender':<12} {'wall s':>8} {'/project':>9} {'/limit':>7}  requests")
    for mode, r in results.items():
        reqs = ", ".join(
            f"{k} {v}"
            + (f" ({r['request_seconds'][k]:.1f} s)" if k in r.get("request_seconds", {}) else "")
            for k, v in r["requests"].items()
        )
        print(
            f"{mode:<12} {r['wall']:8.2f} {r['wall'] / base:9.2f} {r['wall'] / limit:7.2f}  {reqs}"
        )
    print(
        f"\nproject / max(list floor, delete floor): {base / limit:.2f}x (goal <= 1.2x);"
        f" project / (list + delete): {base / (list_floor + delete_floor):.2f}x"
    )
    expected = -(-n // 1000) + -(-e // 1000)
    got = sum(results["project"]["requests"].values())
    print(f"project requests: {got} (ceil(L/1000) + ceil(E/1000) = {expected})")
    if "naive" in results:
        print(f"naive / project: {results['naive']['wall'] / base:.2f}x")
    if "rclone" in results:
        print(f"rclone / project: {results['rclone']['wall'] / base:.2f}x")

    # Memory without the latency model (it only stretches the wall time).
    env["CLOUDCUBE_URL"] = server.cloudcube_url(BUCKET, CUBE)
    if args.memory_sizes:
        print("\nproject cleanup peak memory by listed objects (half expired):")
    memory = {}
    for size in args.memory_sizes:
        seed(server, size, 0)
        r = run_child("project", env)
        memory[size] = r
        print(
            f"  {size:>7} objects: RSS high-water {r['rss_peak_mb']:.1f} MB, wall {r['wall']:.1f} s"
        )
    if len(memory) >= 2:
        sizes = sorted(memory)
        growth = memory[sizes[-1]]["rss_peak_mb"] - memory[sizes[0]]["rss_peak_mb"]
        print(f"  RSS growth {sizes[0]} -> {sizes[-1]}: {growth:+.1f} MB (goal: within 15 MB)")
    proxy.stop()
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
    else:
        main()
