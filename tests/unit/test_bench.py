"""The benchmark's own logic that needs no homeserver: the PostgreSQL cluster's
configuration, CPU accounting of a process tree, and the side-by-side table of targets
per homeserver profile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bench.cli import merge_runs
from bench.postgres import SMALL_SERVER, as_owner, bin_dir, render_conf, synapse_database
from bench.procs import cpu_seconds, tree_cpu_seconds
from bench.report import render_markdown, target_rows


def test_the_cluster_listens_on_loopback_only_at_its_own_port_and_socket() -> None:
    conf = render_conf(54321, Path("/tmp/pg-home"), {"shared_buffers": "256MB"})
    assert conf.splitlines() == [
        "listen_addresses = '127.0.0.1'",
        "port = 54321",
        "unix_socket_directories = '/tmp/pg-home'",
        "shared_buffers = '256MB'",
    ]


def test_the_small_server_tuning_sets_what_synapses_docs_name() -> None:
    named = {"shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem",
             "autovacuum_work_mem"}
    assert named <= set(SMALL_SERVER)
    assert "fsync" not in SMALL_SERVER and "synchronous_commit" not in SMALL_SERVER


def test_synapse_reaches_the_cluster_over_tcp_with_psycopg2() -> None:
    database = synapse_database(54321)
    assert database["name"] == "psycopg2"
    assert database["args"]["host"] == "127.0.0.1"
    assert database["args"]["port"] == 54321
    assert database["args"]["dbname"] == "synapse"


def test_as_root_the_cluster_runs_as_the_postgres_account() -> None:
    assert as_owner(["initdb", "-D", "x"], root=False) == ["initdb", "-D", "x"]
    assert as_owner(["initdb", "-D", "x"], root=True) == [
        "runuser", "-u", "postgres", "--", "initdb", "-D", "x"]


def test_the_newest_debian_server_binaries_are_found(tmp_path: Path,
                                                     monkeypatch: Any) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for version in ("13", "15"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        (folder / "initdb").touch()
    assert bin_dir([tmp_path / "13" / "bin", tmp_path / "15" / "bin"]) == tmp_path / "15" / "bin"


def test_a_process_tree_costs_at_least_its_root() -> None:
    own = cpu_seconds(os.getpid())
    tree = tree_cpu_seconds(os.getpid())
    assert own is not None and tree is not None
    assert tree >= own


def _target(name: str, value: float, limit: str, met: bool | None) -> dict[str, Any]:
    return {"name": name, "value": value, "target": limit, "met": met}


def _results() -> dict[str, Any]:
    machine = {"date": "2026-12-07T20:00:00+00:00", "cpu_model": "EPYC", "cores": 2,
               "memory_gib": 23.5, "load_average_at_start": [0.5, 0.5, 0.5],
               "python": "3.11.7", "matrix_nio": "0.26.0", "vodozemac": "0.10.0",
               "synapse": "1.163.2", "postgresql": "15.18", "commit": "abcdef1234567",
               "dirty": False}
    return {
        "machine": machine, "options": {"quick": False}, "judged_on": "postgres",
        "profiles": {
            "sqlite": {"load_average_at_start": [1.0], "scenarios": {
                "relay": {"targets": [_target("relay p50 / minimal", 1.15, "<= 1.1", False)]},
                "fanout": {"error": "TimeoutError: slow"},
            }},
            "postgres": {"load_average_at_start": [2.0], "scenarios": {
                "relay": {"targets": [_target("relay p50 / minimal", 1.05, "<= 1.1", True)]},
                "fanout": {"targets": [_target("old form", 4.0, "(<= 5)", None)]},
            }},
        },
    }


def test_each_target_is_one_row_with_every_profiles_figure() -> None:
    rows = target_rows(_results())
    relay = next(row for row in rows if row.scenario == "relay")
    assert relay.target == "<= 1.1"
    assert relay.values == {"sqlite": (1.15, False), "postgres": (1.05, True)}


def test_a_scenario_that_failed_on_one_profile_shows_its_error_there_only() -> None:
    rows = target_rows(_results())
    error = next(row for row in rows if row.figure == "error")
    assert error.values == {"sqlite": ("TimeoutError: slow", False)}
    reported = next(row for row in rows if row.figure == "old form")
    assert reported.values == {"postgres": (4.0, None)}


def test_the_table_has_a_column_per_profile_and_names_the_judged_one() -> None:
    table = render_markdown(_results())
    assert "| scenario | figure | target | sqlite | postgres |" in table
    assert "| relay | relay p50 / minimal | <= 1.1 | 1.15 ✗ | 1.05 ✓ |" in table
    assert "| fanout | old form | (<= 5) |  | 4.0 |" in table
    assert "judged on **postgres**" in table
    assert "PostgreSQL 15.18" in table


def test_runs_of_one_commit_merge_into_profiles_side_by_side() -> None:
    results = _results()
    sqlite = {**results, "profiles": {"sqlite": results["profiles"]["sqlite"]}, "seconds": 10}
    postgres = {**results, "profiles": {"postgres": results["profiles"]["postgres"]},
                "seconds": 20}
    merged = merge_runs([sqlite, postgres])
    assert list(merged["profiles"]) == ["sqlite", "postgres"]
    assert merged["seconds"] == 20
    assert merged["profiles"]["postgres"]["machine"]["commit"] == "abcdef1234567"
    assert "2 processes at the same time" in render_markdown(merged)


def test_runs_of_different_commits_are_not_merged() -> None:
    other = _results()
    other["machine"] = {**other["machine"], "commit": "0000000"}
    with pytest.raises(SystemExit):
        merge_runs([_results(), other])
