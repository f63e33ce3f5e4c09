"""The real server for the scenarios: its own database, started, killed (SIGKILL, as a
power cut does) and started again on the same port; its CLI for users, backups and
restores; plain SQL for what an operator does by hand. Clients reach it through the
proxy."""

import os
import signal
import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary: str, admin_url: str, log_path: str, **settings: str):
        self.binary = binary
        self.admin_url = admin_url
        self.db = f"nas_scenarios_{int(time.time())}_{os.getpid()}"
        self.db_url = admin_url.rsplit("/", 1)[0] + "/" + self.db
        self.port = free_port()
        self.log = open(log_path, "a")
        self.env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "NAS_SYNC_BIND": f"127.0.0.1:{self.port}",
            "NAS_SYNC_RATE_LIMIT": "off",
            "NAS_SYNC_LOG": "warn",
            **settings,
        }
        self.proc = None
        self.cli("migrate")

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([self.binary, *args], env=self.env, input=stdin, text=True,
                              capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"nas-sync {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def add_user(self, name: str, role: str = "manager", store: str | None = None) -> None:
        args = ["user", "add", name, "--role", role, "--password-stdin"]
        if store:
            args += ["--store", store]
        self.cli(*args, stdin="scenario-pw\n")

    def sql(self, query: str) -> str:
        done = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.db_url,
                               "-c", query], text=True, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, stdout=self.log,
                                     stderr=self.log)
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("the server exited at start; see its log")
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def kill(self) -> None:
        """SIGKILL: no graceful end, as when the NAS loses power."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def close(self) -> None:
        self.stop()
        subprocess.run(["psql", "-X", "-q", self.admin_url, "-c",
                        f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)"], capture_output=True)
