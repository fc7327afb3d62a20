"""Watching child processes: resident memory from /proc, and py-spy profiles."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from devkit.botprocess import BotProcess
from devkit.layout import product_packages


def proc_status_kib(pid: int, field: str) -> int | None:
    """A `/proc/<pid>/status` figure in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_mib(pid: int) -> float | None:
    kib = proc_status_kib(pid, "VmRSS")
    return None if kib is None else round(kib / 1024, 1)


def peak_rss_mib(pid: int) -> float | None:
    kib = proc_status_kib(pid, "VmHWM")
    return None if kib is None else round(kib / 1024, 1)


class BenchBot(BotProcess):
    """The bot as `BotProcess` runs it, with its pid exposed for /proc and py-spy."""

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def rss_mib(self) -> float | None:
        return None if self.pid is None else rss_mib(self.pid)

    def peak_rss_mib(self) -> float | None:
        return None if self.pid is None else peak_rss_mib(self.pid)


def py_spy() -> str | None:
    """The py-spy next to this interpreter (pip install py-spy into .venv), or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profile:
    """py-spy sampling one process (all its threads, idle ones left out) into collapsed
    stacks; `start` attaches, `stop` detaches and returns the file."""

    def __init__(self, pid: int, output: Path, *, rate: int = 200, gil: bool = False) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self.gil = gil
        """Only samples where a thread holds the GIL: where Python's CPU goes, rather than
        where time goes (a thread waiting for a core or the GIL counts as working)."""
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> bool:
        exe = py_spy()
        if exe is None:
            return False
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate", str(self.rate),
            "--output", str(self.output), "--nonblocking", *(["--gil"] if self.gil else []),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(0.5)  # attached before the measured work starts
        return True

    async def stop(self) -> Path | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.returncode is None:
            process.send_signal(2)  # SIGINT: py-spy writes what it has and exits
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
        return self.output if self.output.exists() else None


def _idle_frames() -> tuple[str, ...]:
    """Leaf frames that mean "waiting", which py-spy cannot always tell from working: the
    event loop in epoll, and aiosqlite's worker thread blocked on its queue."""
    idle = ["EpollSelector.select (selectors.py"]
    try:
        import aiosqlite.core
        source = Path(aiosqlite.core.__file__).read_text().splitlines()
        idle += [f"_connection_worker_thread (aiosqlite/core.py:{number})"
                 for number, line in enumerate(source, start=1) if "tx.get()" in line]
    except (ImportError, OSError):
        pass
    return tuple(idle)


PRODUCT_FOLDERS = tuple(product_packages())
"""Liaison's own code, as py-spy names its frames' files (`(bot/events.py:12)`)."""


def summarise_collapsed(path: Path, *, top: int = 15,
                        prefix: tuple[str, ...] = PRODUCT_FOLDERS
                        ) -> dict[str, object]:
    """From py-spy's collapsed stacks (`frame;frame;... count`), leaving out idle samples:
    the share of working samples inside each function of Liaison's own code (inclusive),
    inside SQLite (aiosqlite's worker thread running a statement), and the top leaf
    frames of everything."""
    idle = _idle_frames()
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = idle_samples = sqlite = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = stack.split(";")
        if any(frames[-1].startswith(frame) for frame in idle):
            idle_samples += count
            continue
        total += count
        if any("_connection_worker_thread (aiosqlite" in frame for frame in frames):
            sqlite += count
        leaf[_short(frames[-1])] += count
        seen: set[str] = set()
        for frame in frames:
            short = _short(frame)
            if short in seen or not any(f"({p}/" in frame for p in prefix):
                continue
            seen.add(short)
            inclusive[short] += count

    def share(counter: Counter[str]) -> list[dict[str, object]]:
        return [{"frame": name, "share": round(count / total, 3)}
                for name, count in counter.most_common(top)] if total else []
    return {"working_samples": total, "idle_samples": idle_samples,
            "sqlite_thread_share": round(sqlite / total, 3) if total else None,
            "inclusive_liaison": share(inclusive), "leaf": share(leaf)}


def _short(frame: str) -> str:
    """`function (path/to/file.py:12)` -> `function (file.py)`, stable across line edits."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    tail = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{name} ({tail})"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used so far (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _stat_fields(pid: int, task: int | None = None) -> list[str] | None:
    path = f"/proc/{pid}/task/{task}/stat" if task is not None else f"/proc/{pid}/stat"
    try:
        return Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def main_thread_cpu_seconds(pid: int) -> float | None:
    """CPU time of a process's main thread alone: for a bot, its event loop (Python, JSON,
    crypto), as against its other threads (aiosqlite's workers running SQLite)."""
    fields = _stat_fields(pid, pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (by their parent pid in /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of a process and all its descendants, live or exited and reaped: for
    PostgreSQL, whose work is done in one backend process per connection. Its own
    user + system time, the reaped children's (cutime + cstime), and the live children's
    trees."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    own = sum(int(fields[index]) for index in (11, 12, 13, 14)) / ticks
    return own + sum(tree_cpu_seconds(child) or 0.0 for child in children(pid))


class CpuMeter:
    """CPU seconds each named process used between `start()` and `stop()`, and the wall
    time: shows which process a scenario was waiting for (2 cores: 2 s of CPU per s).
    Names in `trees` count the process with its descendants (`tree_cpu_seconds`)."""

    def __init__(self, pids: dict[str, int | None], *, trees: frozenset[str] = frozenset(
            {"postgres"})) -> None:
        self._pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._trees = trees
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def _cpu(self, name: str) -> float:
        pid = self._pids[name]
        used = tree_cpu_seconds(pid) if name in self._trees else cpu_seconds(pid)
        return used or 0.0

    def start(self) -> None:
        self._wall = time.monotonic()
        self._start = {name: self._cpu(name) for name in self._pids}

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._wall
        used = {name: round(self._cpu(name) - self._start[name], 2) for name in self._pids}
        return {"wall_s": round(wall, 2), **{f"{name}_cpu_s": value
                                             for name, value in used.items()}}
