"""Run the Procfile's own lines as real processes and watch their output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from devstack.lifetime import die_with_parent
from devstack.ports import free_port
from devstack.procfile import procfile_command
from devstack.procinfo import wait_for

ROOT = Path(__file__).resolve().parents[2]


def venv_path_env(env: dict[str, str]) -> dict[str, str]:
    """Put this interpreter's bin directory first, as a dyno's PATH would."""
    env = dict(env)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


class ProcfileProcess:
    """One Procfile process type started with bash -c, in its own process group."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, extra_args: str = ""):
        self.name = name
        self.command = procfile_command(name) + (f" {extra_args}" if extra_args else "")
        self.env = venv_path_env(env)
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    def start(self) -> ProcfileProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        # exec: the shell becomes the process itself, so signals reach it.
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {self.command}"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # A test run that dies must not leave workers behind.
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the whole process group: the worker, its pool and beat child."""
        if self.process is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)

    def stop(self, timeout: float = 15) -> None:
        if self.process is None:
            return
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_output(self, text: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            time.sleep(0.2)
        return False


class WorkerDynos:
    """Procfile worker dynos for one test, named worker.1, worker.2, … like
    Heroku's; `stop_all()` at the end stops every one that was started."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = Path(log_dir)
        self.started: list[ProcfileProcess] = []

    def start(self, extra_args: str = "", **overrides: str) -> ProcfileProcess:
        number = len(self.started) + 1
        env = dict(self.env, DYNO=f"worker.{number}", **overrides)
        log = self.log_dir / f"worker-{number}.log"
        worker = ProcfileProcess("worker", env, log, extra_args=extra_args)
        self.started.append(worker.start())
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


def start_web(env: dict[str, str], log: Path, *, workers: int = 1) -> tuple[ProcfileProcess, int]:
    """The Procfile's web line on a free port, once gunicorn answers.

    It asks /admin/login/, not /health/: some tests measure the first health request.
    """
    port = free_port()
    web = ProcfileProcess("web", dict(env, PORT=str(port), WEB_CONCURRENCY=str(workers)), log)
    web.start()

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5)  # noqa: S310
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    assert wait_for(answers, timeout=60, step=0.3), web.output()
    return web, port
