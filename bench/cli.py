"""`python -m bench [--quick] [--only relay,burst] [--homeserver sqlite,postgres] [--profile]`.

For each homeserver profile — Synapse on SQLite, Synapse on a throw-away PostgreSQL
cluster — starts its own Synapse in a temporary directory, runs the chosen scenarios one
after another (each with fresh accounts and a fresh bot), and writes the figures of every
profile side by side into `bench/results/latest.json` and `bench/results/latest.md`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.machine import load_average, machine_info
from bench.postgres import PostgresCluster
from bench.report import render_markdown
from bench.stage import HOMESERVERS, Stage
from devkit.synapse import default_synapse_python

RESULTS = Path(__file__).resolve().parent / "results"

# In the order they run: the parser first, while nothing else competes for the CPU.
SCENARIOS = ("parser", "relay", "burst", "fanout", "scale", "opencases", "memory")
NEEDS_SYNAPSE = frozenset({"relay", "burst", "fanout", "scale", "opencases", "memory"})
JUDGED_ON = "postgres"
"""The profile the targets are judged on: the homeserver deployments run."""


@dataclass
class Context:
    """What a scenario gets: the options, the stage, a scratch directory, a logger."""

    quick: bool
    repeats: int | None
    profile: bool
    memory_cases: int | None
    workdir: Path
    results: Path
    homeserver: str = "sqlite"
    profile_gil: bool = False
    stage: Stage | None = None
    started: float = field(default_factory=time.monotonic)

    def profile_path(self, name: str) -> Path:
        """Where py-spy's collapsed stacks of one scenario on this profile go."""
        return self.results / f"profile-{self.homeserver}-{name}.txt"

    def progress(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", file=sys.stderr,
              flush=True)


def scenario(name: str) -> Callable[[Context], Awaitable[dict[str, Any]]]:
    module = __import__(f"bench.scenarios.{name}", fromlist=["run"])
    run: Callable[[Context], Awaitable[dict[str, Any]]] = module.run
    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smaller loads and fewer repetitions, for development")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma-separated scenarios to run (default: all of {SCENARIOS})")
    parser.add_argument("--homeserver", default=",".join(HOMESERVERS),
                        help="comma-separated homeserver profiles, each running every scenario "
                             f"(default: {','.join(HOMESERVERS)}; targets are judged on "
                             f"{JUDGED_ON})")
    parser.add_argument("--repeats", type=int, default=None,
                        help="override the number of measured rounds where a scenario has them")
    parser.add_argument("--memory-cases", type=int, default=None,
                        help="cases routed in the memory scenario (default 10000, quick 600)")
    parser.add_argument("--bot-config", default=None, metavar="JSON",
                        help="extra configuration merged into every bot's, for experiments, "
                             "e.g. '{\"outbox\": {\"concurrency\": 16}}'")
    parser.add_argument("--profile", action="store_true",
                        help="sample the bot with py-spy during the relay, burst and open-cases "
                             "scenarios (pip install py-spy into .venv)")
    parser.add_argument("--minirelay-answers", action="store_true",
                        help="the minimal relay also answers every message in its source room, "
                             "as Liaison does: what the third message per alert costs")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: sample only while the bot holds the GIL (its "
                             "Python CPU, not its wall time)")
    parser.add_argument("--output", default=str(RESULTS / "latest"),
                        help="write OUTPUT.json and OUTPUT.md (default: bench/results/latest)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--merge", nargs="+", metavar="JSON", default=None,
                        help="run nothing: combine the profiles of runs made side by side "
                             "(e.g. one per homeserver, at the same time on one machine) "
                             "into OUTPUT.json and OUTPUT.md")
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; choose from {SCENARIOS}")
    homeservers = [name.strip() for name in args.homeserver.split(",") if name.strip()]
    unknown = sorted(set(homeservers) - set(HOMESERVERS))
    if unknown:
        raise SystemExit(f"unknown homeserver profiles {unknown}; choose from {HOMESERVERS}")
    synapse_python = default_synapse_python()
    machine = machine_info(synapse_python)
    if "postgres" in homeservers:
        machine["postgresql"] = PostgresCluster().version()
    results: dict[str, Any] = {
        "machine": machine,
        "options": {"quick": args.quick, "repeats": args.repeats, "profile": args.profile,
                    "memory_cases": args.memory_cases, "bot_config": args.bot_config,
                    "scenarios": names, "homeservers": homeservers,
                    "minirelay_answers": args.minirelay_answers},
        "judged_on": JUDGED_ON,
        "profiles": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="liaison-bench-"))
    started = time.monotonic()
    try:
        for homeserver in homeservers:
            ctx = Context(quick=args.quick, repeats=args.repeats, profile=args.profile,
                          memory_cases=args.memory_cases, workdir=scratch / homeserver,
                          results=Path(args.output).parent, homeserver=homeserver,
                          profile_gil=args.profile_gil,
                          started=started)
            ctx.workdir.mkdir(parents=True)
            results["profiles"][homeserver] = await run_profile(ctx, names, synapse_python,
                                                                args.bot_config,
                                                                args.minirelay_answers)
    finally:
        if not args.keep:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


async def run_profile(ctx: Context, names: list[str], synapse_python: str,
                      bot_config: str | None, minirelay_answers: bool = False
                      ) -> dict[str, Any]:
    """Every chosen scenario on one homeserver profile, with the load it started under."""
    outcome: dict[str, Any] = {"load_average_at_start": load_average(), "scenarios": {}}
    ctx.progress(f"homeserver {ctx.homeserver}: scratch directory {ctx.workdir}")
    stage: Stage | None = None
    started = time.monotonic()
    try:
        for name in (n for n in SCENARIOS if n in names):
            if name in NEEDS_SYNAPSE and stage is None:
                stage = Stage(ctx.workdir, synapse_python,
                              bot_config=json.loads(bot_config or "{}"),
                              homeserver=ctx.homeserver,
                              minirelay_answers=minirelay_answers)
                await stage.__aenter__()
                ctx.stage = stage
            ctx.progress(f"{ctx.homeserver}: scenario {name}")
            scenario_started = time.monotonic()
            try:
                result = await scenario(name)(ctx)
            except Exception as error:  # one broken scenario must not lose the others
                traceback.print_exc()
                result = {"error": f"{type(error).__name__}: {error}"}
            result["seconds"] = round(time.monotonic() - scenario_started, 1)
            outcome["scenarios"][name] = result
            ctx.progress(f"{ctx.homeserver}: scenario {name} done in {result['seconds']}s")
            if stage is not None:
                await stage.clear()
    finally:
        if stage is not None:
            await stage.__aexit__(None, None, None)
            ctx.stage = None
    outcome["load_average_at_end"] = load_average()
    outcome["seconds"] = round(time.monotonic() - started, 1)
    return outcome


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from runs that each measured some profiles: the profiles side by side,
    each keeping its own machine record (date, load, commit) under `machine`; the first
    run's record heads the whole. Runs of different commits are refused."""
    commits = {run["machine"].get("commit") for run in runs}
    if len(commits) != 1:
        raise SystemExit(f"runs of different commits cannot be merged: {sorted(map(str, commits))}")
    merged: dict[str, Any] = {**runs[0], "profiles": {}, "merged_from": len(runs)}
    merged["options"] = {**runs[0]["options"], "homeservers": []}
    for run in runs:
        for name, profile in run["profiles"].items():
            merged["profiles"][name] = {**profile, "machine": run["machine"]}
            merged["options"]["homeservers"].append(name)
    merged["seconds"] = max(run.get("seconds", 0) for run in runs)
    return merged


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.merge:
        results = merge_runs([json.loads(Path(name).read_text()) for name in args.merge])
    else:
        results = asyncio.run(run_all(args))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(results, indent=2, ensure_ascii=False)
                                           + "\n")
    table = render_markdown(results)
    output.with_suffix(".md").write_text(table)
    print(table)
    return 0
