"""The cleanup and the dashboard at 10k / 100k / 1M objects, at S3's speed and rates (by hand).

    .venv/bin/python bench/million_bench.py                      # 10k, 100k, 1M
    .venv/bin/python bench/million_bench.py --sizes 10000,1000000 --baseline /tmp/s3-base

A bench-only in-memory S3 stub (bench/s3_stub.py: ListObjectsV2 in O(page) with
Delimiter, DeleteObjects of at most 1,000 keys) runs in this process with a
latency model (default 50 ms a list page, 500 ms a 1,000-key DeleteObjects)
and S3's request rates (devstack/s3_throttle.py: 3,500 deletes and 5,500 reads
a second per prefix partition, a DeleteObjects costing one a key, 503 SlowDown
above; docs/benchmarks.md#the-s3-model). For each size N it is seeded in memory
with N objects spread over 24 month folders (`clips/%Y/%m/`), half of them older
than the retention (E = N/2 expired, half of every month), plus old objects of
a sibling cube that must survive. Each contender is its own process, started
the same way (interpreter + Django set-up), timed from the outside:

- process start: a child that sets Django up and exits;
- slowest list chain: one ListObjectsV2 chain over the biggest month, alone;
- physical floor = max(slowest chain, E / (3,500 x months)) + process start;
- project: `manage.py cloudcube_cleanup` of this checkout, and with
  `--baseline DIR` of another one (e.g. `git worktree add /tmp/s3-base <commit>`),
  each against the same data and model: wall / floor, its S3 requests against
  sum over chains of ceil(L/1000) + ceil(E/1000) + the discovery requests (and
  against ceil(L/1000) + ceil(E/1000)), SlowDown answers, keys/s per month
  against 3,500, its run's status and the keys left, its peak RSS (VmHWM);
- dashboard: the staff page on the cube just cleaned, its S3 requests (none).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import sqlite3
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
OTHER_OBJECTS = 1000  # a sibling cube's old objects, never touched
STAFF = ("bench-operator", "bench-pw-not-secret-1")


MONTHS = 24


def month_of(i: int) -> str:
    """Object i's month folder: 24 months up to 2026/11, each half expired."""
    m = (i // 2) % MONTHS  # i % 2 decides the age: every month gets both
    year, month = divmod(2026 * 12 + 10 - m, 12)
    return f"{year}/{month + 1:02d}"


def key_of(i: int) -> str:
    return f"{CUBE}/public/clips/{month_of(i)}/{i:07d}.mp4"


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
    if mode == "start":
        pass
    elif mode == "list-chain":
        client = _client()
        listed = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=settings.CLOUDCUBE.bucket,
            Prefix=f"{CUBE}/public/clips/{month_of(0)}/",
            PaginationConfig={"PageSize": 1000},
        ):
            listed += len(page.get("Contents", ()))
        result["listed"] = listed
    elif mode == "list-only":
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
def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_measured(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> dict:
    """Run a child; its wall time seen from here (process start included), its output,
    its CPU seconds and this process's (the S3 stub's) meanwhile."""
    started = time.perf_counter()
    children, own = cpu_seconds(resource.RUSAGE_CHILDREN), cpu_seconds(resource.RUSAGE_SELF)
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    return {
        "cpu": cpu_seconds(resource.RUSAGE_CHILDREN) - children,
        "stub_cpu": cpu_seconds(resource.RUSAGE_SELF) - own,
        "wall": time.perf_counter() - started,
        "returncode": done.returncode,
        "stdout": done.stdout,
        "stderr": done.stderr,
    }


def project_run(env: dict[str, str], root: Path = ROOT, profile: list[str] | None = None) -> dict:
    """The cleanup's process; `profile` is a command put before it (a sampling profiler)."""
    done = run_measured(
        [*(profile or []), sys.executable, "-c", PROJECT_WRAPPER, "cloudcube_cleanup",
         "--retention-days", str(RETENTION_DAYS)], dict(env, PYTHONPATH=f"{root}:{ROOT}"),
        cwd=root,
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


def last_run(workdir: Path) -> tuple[str, int, int]:
    """(status, files deleted, errors) of the newest CleanupRun in the bench database."""
    with sqlite3.connect(workdir / "bench.sqlite3") as db:
        row = db.execute(
            "SELECT status, files_deleted, error_count FROM viral_clips_cleanuprun"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return tuple(row) if row else ("none", 0, 0)


def expected_requests(n: int) -> tuple[int, int]:
    """(sum over months of ceil(L/1000) + ceil(E/1000), ceil(L/1000) + ceil(E/1000))."""
    per_month = [0] * MONTHS
    for i in range(n):
        per_month[(i // 2) % MONTHS] += 1
    expired = math.ceil(n / 2)
    chains = sum(math.ceil(count / 1000) for count in per_month)
    return chains + math.ceil(expired / 1000), math.ceil(n / 1000) + math.ceil(expired / 1000)


def contender(name, root, n, env, stub, workdir, now, floor, profile=None) -> dict:
    stub.reset_counts()
    done = project_run(env, root, profile)
    requests = dict(stub.requests)
    left = stub.count(BUCKET, f"{CUBE}/")
    assert stub.count(BUCKET, f"{OTHER_CUBE}/") == OTHER_OBJECTS, "sibling touched!"
    status, deleted, errors = last_run(workdir)
    rates = sorted(stub.throttle.keys_per_second().values())
    row = {
        "name": name,
        "n": n,
        "wall": done["wall"],
        "cpu": done["cpu"],
        "stub_cpu": done["stub_cpu"],
        "ratio": done["wall"] / floor,
        "requests": sum(requests.values()) - requests.get("HeadBucket", 0),
        "requests_by_op": requests,
        "slowdowns": sum(stub.slowdowns.values()),
        "rss": done["rss_peak_mb"],
        "status": status,
        "deleted": deleted,
        "errors": errors,
        "left_expired": left - (n - math.ceil(n / 2)),
        "rate_min": rates[0] if rates else 0.0,
        "rate_median": rates[len(rates) // 2] if rates else 0.0,
        "rate_max": rates[-1] if rates else 0.0,
    }
    # Put the expired keys back for the next contender.
    stub.restore(BUCKET, (item for item in items(n, now) if item[2] < now - timedelta(days=2)))
    assert stub.count(BUCKET, f"{CUBE}/") == n
    return row


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
    parser.add_argument("--burst", type=float, default=1.0, help="s of S3's rate a bucket holds")
    parser.add_argument("--baseline", type=Path, help="another checkout's cleanup, same model")
    parser.add_argument("--no-dashboard", action="store_true")
    parser.add_argument(
        "--profile",
        help="a command put before this checkout's cleanup, e.g. 'py-spy record -r 50 -f raw"
        " -o /tmp/cleanup.txt --'",
    )
    args = parser.parse_args()

    from bench.s3_stub import S3Stub
    from devstack.redis_server import RedisServer
    from devstack.s3_throttle import WRITE_RATE, S3Throttle

    stub = S3Stub(
        list_latency=args.list_latency,
        delete_latency=args.delete_latency,
        throttle=S3Throttle(burst_seconds=args.burst),
    ).start()
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
    # The dyno's config vars that change how a process runs (app.json sets them
    # on every dyno, one-off dynos included): each contender gets the same.
    app_env = json.loads((ROOT / "app.json").read_text())["env"]
    for name in ("MALLOC_ARENA_MAX",):
        env.setdefault(name, app_env[name]["value"])
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    print(
        f"model: {args.list_latency * 1000:.0f} ms a list page,"
        f" {args.delete_latency * 1000:.0f} ms a 1,000-key DeleteObjects,"
        f" {WRITE_RATE:.0f} deletes/s per prefix (one a key), burst {args.burst:g} s;"
        f" {MONTHS} month folders; MALLOC_ARENA_MAX={env['MALLOC_ARENA_MAX']} (app.json)",
        flush=True,
    )
    contenders = [("this checkout", ROOT)]
    if args.baseline:
        contenders.insert(0, (f"baseline {args.baseline.name}", args.baseline.resolve()))
    rows = []
    for n in args.sizes:
        now = datetime.now(UTC)
        other = [(f"{OTHER_CUBE}/public/clips/{i:05d}.mp4", SIZE, now - timedelta(days=30))
                 for i in range(OTHER_OBJECTS)]  # fmt: skip
        stub.seed(BUCKET, [*items(n, now), *other])
        expired = math.ceil(n / 2)
        start = min(child_run("start", n, env)["wall"] for _ in range(3))
        stub.reset_counts()
        chain = child_run("list-chain", n, env)
        floor_list = chain["inner_wall"]
        floor_delete = expired / (WRITE_RATE * MONTHS)
        floor = max(floor_list, floor_delete) + start
        exact, flat = expected_requests(n)
        print(
            f"\n{n:>9,} objects, {expired:,} expired: process start {start:.2f} s,"
            f" slowest list chain {floor_list:.2f} s ({chain['listed']:,} keys),"
            f" deletes at the rate {floor_delete:.2f} s -> physical floor {floor:.2f} s;"
            f" requests floor {exact:,} (sum of ceil per month)"
            f" / {flat:,} (ceil(L/1000)+ceil(E/1000))",
            flush=True,
        )
        for name, root in contenders:
            profile = args.profile.split() if args.profile and root == ROOT else None
            row = contender(name, root, n, env, stub, workdir, now, floor, profile)
            row.update(floor=floor, exact=exact, flat=flat)
            rows.append(row)
            print(
                f"  {name:<22} {row['wall']:7.2f} s = {row['ratio']:.2f}x floor;"
                f" {row['requests']:,} requests {row['requests_by_op']};"
                f" {row['slowdowns']} SlowDown; {row['status']}, {row['errors']} errors,"
                f" {row['left_expired']} expired keys left; keys/s per month"
                f" {row['rate_min']:.0f}/{row['rate_median']:.0f}/{row['rate_max']:.0f}"
                f" (min/median/max, limit {WRITE_RATE:.0f}); peak RSS {row['rss']:.1f} MB;"
                f" CPU s: cleanup {row['cpu']:.1f}, S3 stub {row['stub_cpu']:.1f}",
                flush=True,
            )
        if not args.no_dashboard:
            stub.reset_counts()
            # The page's {% static %} needs collectstatic's manifest without DEBUG.
            board = child_run("dashboard", n, dict(env, DJANGO_DEBUG="1"))
            print(
                f"  dashboard: {board['warm_median'] * 1000:.0f} ms warm,"
                f" {sum(stub.requests.values())} S3 requests",
                flush=True,
            )
    print(
        "\n| contender | objects | wall s | floor s | /floor | requests (floor) | SlowDown"
        " | status, expired left | keys/s per month min/med/max (limit 3,500) | peak RSS MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['n']:,} | {r['wall']:.2f} | {r['floor']:.2f} | {r['ratio']:.2f}"
            f" | {r['requests']:,} ({r['exact']:,}) | {r['slowdowns']:,} | {r['status']},"
            f" {r['left_expired']:,} | {r['rate_min']:,.0f} / {r['rate_median']:,.0f} /"
            f" {r['rate_max']:,.0f} | {r['rss']:.1f} |"
        )
    for name, _ in contenders:
        mine = [r for r in rows if r["name"] == name]
        if len(mine) >= 2:
            print(f"{name}: peak RSS {mine[-1]['n']:,} vs {mine[0]['n']:,}:"
                  f" {mine[-1]['rss'] - mine[0]['rss']:+.1f} MB (goal: within 15 MB)")  # fmt: skip
    redis_server.stop()
    stub.stop()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
