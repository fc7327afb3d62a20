"""A throw-away PostgreSQL cluster for Synapse, made and removed by the benchmarks.

`initdb` and `pg_ctl` (Debian's `postgresql` package, installed by `make postgres`) build
a cluster in a temporary directory listening on a free loopback port, tuned as Synapse's
documentation suggests for a small server: its "Tuning Postgres" section names
`shared_buffers`, `effective_cache_size`, `work_mem`, `maintenance_work_mem` and
`autovacuum_work_mem`, sized to the memory the database host can spare; durability
(`fsync`, `synchronous_commit`) stays as deployed. PostgreSQL refuses to run as root, so
as root the cluster belongs to the `postgres` account the package creates.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devkit.synapse import free_port

DATABASE = "synapse"
USER = "synapse"
OWNER_WHEN_ROOT = "postgres"

# What Synapse's docs say to tune, for a small server on a shared 2-core, 23 GiB machine
# (the bench's Synapse holds at most a few hundred MiB of data).
SMALL_SERVER: dict[str, str] = {
    "shared_buffers": "256MB",
    "effective_cache_size": "1GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "64MB",
    "autovacuum_work_mem": "64MB",
    "max_connections": "50",
}


def bin_dir(search: Sequence[Path] | None = None) -> Path:
    """Where the server binaries are: next to `initdb` on PATH, else Debian's
    /usr/lib/postgresql/<newest>/bin."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).resolve().parent
    candidates = search if search is not None else sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    for candidate in reversed(list(candidates)):
        if (candidate / "initdb").exists():
            return candidate
    raise FileNotFoundError("PostgreSQL's initdb not found: run `make postgres` "
                            "(Debian's postgresql package)")


def render_conf(port: int, socket_dir: Path,
                settings: Mapping[str, str] = SMALL_SERVER) -> str:
    """The lines appended to the cluster's postgresql.conf: loopback only, on `port`,
    its socket in `socket_dir`, plus `settings`."""
    lines = [
        "listen_addresses = '127.0.0.1'",
        f"port = {port}",
        f"unix_socket_directories = '{socket_dir}'",
        *(f"{name} = '{value}'" for name, value in settings.items()),
    ]
    return "\n".join(lines) + "\n"


def synapse_database(port: int) -> dict[str, Any]:
    """Synapse's `database` section for the cluster (the pool size of its docs' example)."""
    return {"name": "psycopg2", "args": {
        "user": USER, "dbname": DATABASE, "host": "127.0.0.1", "port": port,
        "cp_min": 5, "cp_max": 10}}


def as_owner(argv: Sequence[str], *, root: bool) -> list[str]:
    """`argv` run as the cluster's owner: unchanged, or through runuser when we are root."""
    return ["runuser", "-u", OWNER_WHEN_ROOT, "--", *argv] if root else list(argv)


class PostgresCluster:
    """One cluster in its own temporary directory; `start()` makes and starts it with an
    empty `synapse` database (UTF8, C locale, as Synapse requires), `stop()` removes it."""

    def __init__(self, *, port: int | None = None,
                 settings: Mapping[str, str] = SMALL_SERVER) -> None:
        self.port = port or free_port()
        self.settings = dict(settings)
        self.bin = bin_dir()
        self.root = os.geteuid() == 0
        self.home: Path | None = None
        self.postmaster_pid: int | None = None

    @property
    def data(self) -> Path:
        assert self.home is not None
        return self.home / "data"

    def version(self) -> str:
        """The server's version, e.g. "15.18" (from `postgres --version`)."""
        import subprocess
        out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
        match = re.search(r"\d+(\.\d+)+", out)
        return match.group(0) if match else "unknown"

    def database(self) -> dict[str, Any]:
        return synapse_database(self.port)

    async def _run(self, *argv: str) -> None:
        process = await asyncio.create_subprocess_exec(
            *as_owner(argv, root=self.root), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({process.returncode}):\n"
                               f"{output.decode(errors='replace')[-2000:]}")

    async def start(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="liaison-bench-pg-"))
        if self.root:
            owner = pwd.getpwnam(OWNER_WHEN_ROOT)
            os.chown(self.home, owner.pw_uid, owner.pw_gid)
        await self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                        "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(render_conf(self.port, self.home, self.settings))
        await self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                        str(self.home / "postgres.log"), "-w", "-t", "60", "start")
        await self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", USER, "--encoding=UTF8", "--locale=C", "--template=template0",
                        DATABASE)
        pid_line = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        self.postmaster_pid = int(pid_line)

    async def stop(self) -> None:
        if self.home is None:
            return
        if (self.data / "postmaster.pid").exists():
            await self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                            "-w", "stop")
        shutil.rmtree(self.home, ignore_errors=True)
        self.home = None
        self.postmaster_pid = None
