"""The cleanup and the dashboard at 10k / 100k / 1M objects, at S3's speed (run by hand).

    .venv/bin/python bench/million_bench.py                      # 10k, 100k, 1M
    .venv/bin/python bench/million_bench.py --sizes 10000,100000 --list-latency 0.05

A bench-only in-memory S3 stub (bench/s3_stub.py: ListObjectsV2 in O(page),
DeleteObjects of at most 1,000 keys) runs in this process with a latency model
(default 50 ms a list page, 500 ms a 1,000-key DeleteObjects). For each size N
it is seeded in memory with N objects under the cube's clips folder, half of
them older than the retention (so E = N/2 expired), plus old objects of a
sibling cube that must survive. Each contender is its own process, started
the same way (interpreter + Django set-up), timed from the outside:

- list-only floor: one ListObjectsV2 pass over the cube, nothing else;
- delete-only floor: DeleteObjects of the E expired keys (names known, no
  listing), 1,000 a request, one request at a time;
- project: `manage.py cloudcube_cleanup` (whatever viral_clips/cleanup/ does
  today), its S3 requests counted at the stub against ceil(L/1000) + ceil(E/1000),
  its peak RSS (the child's own ru_maxrss, from wait4);
- dashboard: the staff page (Django's test client in a child process) on the
  cube just cleaned, with its S3 requests counted (it must make none).

Ratios are within one run: project / max(floors), project / (list + delete).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUCKET = "bench-bucket"
CUBE = "benchcube"
OTHER_CUBE = "benchcube2"  # a sibling cube whose name starts like ours
RETENTION_DAYS = 5
SIZE = 1024
STAFF = ("bench-operator", "bench-pw-not-secret-1")


def key_of(i: int) -> str:
    return f"{CUBE}/public/clips/2026/11/{i:07d}.mp4"


# --- children ------------------------------------------------------------
def _client():
    from viral_clips.s3 import cloudcube_client

    return cloudcube_client()


def child(mode: str, n: int) -> None:
    import django

    django.setup()
    from django.conf import settings

    started = time.perf_counter()
    result: dict = {}
    if mode == "list-only":
        client = _client()
        listed = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.CLOUDCUBE.bucket,
            Prefix=settings.CLOUDCUBE.prefix,
            PaginationConfig={"PageSize": 1000},
        ):
            listed += len(page.get("Contents", ()))
        result["listed"] = listed
    elif mode == "delete-only":
        client = _client()
        expired = [key_of(i) for i in range(0, n, 2)]
        for start in range(0, len(expired), 1000):
            batch = expired[start : start + 1000]
            client.delete_objects(
                Bucket=settings.CLOUDCUBE.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
        result["deleted"] = len(expired)
    elif mode == "dashboard":
        from django.contrib.auth import get_user_model
        from django.test import Client

        user = get_user_model().objects.filter(username=STAFF[0]).first()
        if user is None:
            user = get_user_model().objects.create_user(*STAFF, is_staff=True)
        client = Client()
        client.force_login(user)
        times, text = [], ""
        for _ in range(6):
            t = time.perf_counter()
            response = client.get("/")
            times.append(time.perf_counter() - t)
            assert response.status_code == 200, response.status_code
            text = response.content.decode()
        result["first"] = times[0]
        result["warm_median"] = sorted(times[1:])[len(times[1:]) // 2]
        marker = 'id="cube-objects">'
        at = text.find(marker)
        result["cube_objects_shown"] = text[at + len(marker) : text.find("<", at + len(marker))]
    else:
        raise SystemExit(f"unknown mode {mode}")
    result["inner_wall"] = time.perf_counter() - started
    result["rss_peak_mb"] = vm_hwm_mb()
    print(json.dumps(result))


def vm_hwm_mb() -> float:
    """This process's resident-memory high-water mark (what Heroku's quota counts).

    Not getrusage/wait4's ru_maxrss: a child forked from this bench (which holds
    the stub's million keys) starts with the parent's resident pages, and
    ru_maxrss keeps that peak across exec. VmHWM belongs to the new program.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# `manage.py cloudcube_cleanup ...` as its own process, reporting its VmHWM on exit.
PROJECT_WRAPPER = (
    "import runpy, sys\n"
    "sys.argv = ['manage.py', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_path('manage.py', run_name='__main__')\n"
    "finally:\n"
    "    from bench.million_bench import vm_hwm_mb\n"
    "    print(f'VMHWM_MB={vm_hwm_mb()}', file=sys.stderr)\n"
)


# --- the parent ----------------------------------------------------------
def run_measured(args: list[str], env: dict[str, str]) -> dict:
    """Run a child; its wall time seen from here (process start included), its output."""
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    return {
        "wall": time.perf_counter() - started,
        "returncode": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def project_run(env: dict[str, str]) -> dict:
    done = run_measured(
        [sys.executable, "-c", PROJECT_WRAPPER, "cloudcube_cleanup", "--retention-days",
         str(RETENTION_DAYS)], dict(env, PYTHONPATH=str(ROOT))
    )  # fmt: skip
    if done["returncode"] != 0:
        raise SystemExit(f"cloudcube_cleanup failed:\n{done['stderr'][-3000:]}")
    marks = [line for line in done["stderr"].splitlines() if line.startswith("VMHWM_MB=")]
    done["rss_peak_mb"] = float(marks[-1].split("=", 1)[1])
    return done


def child_run(mode: str, n: int, env: dict[str, str]) -> dict:
    done = run_measured([sys.executable, __file__, "--child", mode, str(n)], env)
    if done["returncode"] != 0:
        raise SystemExit(f"{mode} failed:\n{done['stderr'][-3000:]}")
    return {**done, **json.loads(done["stdout"].strip().splitlines()[-1])}


def items(n: int, now: datetime):
    old = now - timedelta(days=RETENTION_DAYS + 3)
    new = now - timedelta(days=1)
    for i in range(n):
        yield key_of(i), SIZE, old if i % 2 == 0 else new


def print_summary(rows: list[dict]) -> None:
    print("\nsummary (ratios within this run)")
    print(
        f"{'objects':>9} {'list s':>8} {'delete s':>8} {'cleanup s':>9} {'/max':>6} {'/sum':>6}"
        f" {'requests':>9} {'expected':>8} {'RSS MB':>7} {'board ms':>8} {'board S3':>8}"
    )
    for r in rows:
        print(
            f"{r['n']:>9,} {r['list']:8.2f} {r['delete']:8.2f} {r['project']:9.2f}"
            f" {r['ratio_max']:6.2f} {r['ratio_sum']:6.2f} {r['requests']:>9,}"
            f" {r['expected_requests']:>8,} {r['rss']:7.1f} {r['board_warm'] * 1000:8.0f}"
            f" {r['board_requests']:>8}"
        )
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        print(
            f"peak RSS {big['n']:,} vs {small['n']:,}: {big['rss'] - small['rss']:+.1f} MB"
            " (goal: within 15 MB)"
        )
    print("goals: cleanup <= 1.2x max(floors); requests = expected; dashboard <= 300 ms, 0 S3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10_000, 100_000, 1_000_000],
    )
    parser.add_argument("--list-latency", type=float, default=0.05, help="s a list page")
    parser.add_argument(
        "--delete-latency", type=float, default=0.5, help="s a 1,000-key DeleteObjects"
    )
    parser.add_argument("--other-cube-objects", type=int, default=1000)
    parser.add_argument(
        "--only-rss", action="store_true", help="only the project cleanup's peak RSS at each size"
    )
    args = parser.parse_args()

    from bench.s3_stub import S3Stub
    from devstack.redis_server import RedisServer

    stub = S3Stub(list_latency=args.list_latency, delete_latency=args.delete_latency).start()
    redis_server = RedisServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="koolclips-million-"))
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        # Production's DEBUG=0: with DEBUG on, Django keeps the SQL of every query
        # (up to 9,000), which at a million objects is tens of MB of RSS.
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="bench-only-secret-key-not-used-anywhere-else-0123456789",
        DJANGO_SECURE_SSL_REDIRECT="0",
        DJANGO_LOG_LEVEL="WARNING",
        DJANGO_ALLOWED_HOSTS="testserver,localhost,127.0.0.1",
        DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
        CLOUDCUBE_URL=stub.cloudcube_url(BUCKET, CUBE),
        CLOUDCUBE_ACCESS_KEY_ID="bench",
        CLOUDCUBE_SECRET_ACCESS_KEY="bench",
        REDIS_URL=redis_server.url,
        SENTRY_DSN="",
    )
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    print(
        f"latency model: {args.list_latency * 1000:.0f} ms a list page,"
        f" {args.delete_latency * 1000:.0f} ms a 1,000-key DeleteObjects"
    )
    rows = []
    for n in args.sizes:
        now = datetime.now(UTC)
        other = [(f"{OTHER_CUBE}/public/clips/{i:05d}.mp4", SIZE, now - timedelta(days=30))
                 for i in range(args.other_cube_objects)]  # fmt: skip
        stub.seed(BUCKET, [*items(n, now), *other])
        expired = math.ceil(n / 2)
        expected = math.ceil(n / 1000) + math.ceil(expired / 1000)

        if args.only_rss:
            project = project_run(env)
            assert stub.count(BUCKET, f"{CUBE}/") == n - expired
            rows.append({"n": n, "rss": project["rss_peak_mb"], "project": project["wall"]})
            print(f"{n:>9,} objects: cleanup peak RSS {rows[-1]['rss']:.1f} MB,"
                  f" wall {project['wall']:.1f} s", flush=True)  # fmt: skip
            continue

        stub.reset_counts()
        listing = child_run("list-only", n, env)
        assert listing["listed"] == n, listing
        list_requests = dict(stub.requests)

        stub.reset_counts()
        deleting = child_run("delete-only", n, env)
        assert stub.count(BUCKET, f"{CUBE}/") == n - expired
        stub.restore(BUCKET, (item for item in items(n, now) if item[2] < now - timedelta(days=2)))
        assert stub.count(BUCKET, f"{CUBE}/") == n

        stub.reset_counts()
        project = project_run(env)
        requests = dict(stub.requests)
        sizes = list(stub.delete_sizes)
        left = stub.count(BUCKET, f"{CUBE}/")
        assert left == n - expired, f"{left} left, expected {n - expired}"
        assert stub.count(BUCKET, f"{OTHER_CUBE}/") == args.other_cube_objects, "sibling touched!"

        stub.reset_counts()
        # The page's {% static %} needs collectstatic's manifest without DEBUG.
        board = child_run("dashboard", n, dict(env, DJANGO_DEBUG="1"))
        board_requests = sum(stub.requests.values())

        floor = max(listing["wall"], deleting["wall"])
        total = sum(requests.values())
        rows.append(
            {
                "n": n,
                "expired": expired,
                "list": listing["wall"],
                "delete": deleting["wall"],
                "project": project["wall"],
                "ratio_max": project["wall"] / floor,
                "ratio_sum": project["wall"] / (listing["wall"] + deleting["wall"]),
                "requests": total,
                "requests_by_op": requests,
                "expected_requests": expected,
                "largest_delete": max(sizes, default=0),
                "rss": project["rss_peak_mb"],
                "list_rss": listing["rss_peak_mb"],
                "board_first": board["first"],
                "board_warm": board["warm_median"],
                "board_requests": board_requests,
                "board_objects": board["cube_objects_shown"],
                "list_requests": list_requests,
            }
        )
        r = rows[-1]
        print(
            f"\n{n:>9,} objects, {expired:,} expired:"
            f"\n  list-only floor   {r['list']:8.2f} s  ({list_requests})"
            f"\n  delete-only floor {r['delete']:8.2f} s"
            f"\n  project cleanup   {r['project']:8.2f} s  = {r['ratio_max']:.2f}x max(floors),"
            f" {r['ratio_sum']:.2f}x their sum"
            f"\n  requests          {total:,} ({requests}) vs ceil(L/1000)+ceil(E/1000) ="
            f" {expected:,}; largest DeleteObjects {r['largest_delete']} keys"
            f"\n  peak RSS          cleanup {r['rss']:.1f} MB"
            f" (list-only child {r['list_rss']:.1f} MB)"
            f"\n  dashboard         first {r['board_first'] * 1000:.0f} ms, then"
            f" {r['board_warm'] * 1000:.0f} ms (median of 5); {board_requests} S3 requests;"
            f" shows {r['board_objects']} objects",
            flush=True,
        )

    if args.only_rss:
        small, big = rows[0], rows[-1]
        print(f"peak RSS {big['n']:,} vs {small['n']:,}: {big['rss'] - small['rss']:+.1f} MB")
    else:
        print_summary(rows)
    redis_server.stop()
    stub.stop()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
