"""The short human-readable table of a run (`latest.md`): every target once, with the
figure of each homeserver profile side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One target of one scenario, and per profile its value and whether it was met."""

    scenario: str
    figure: str
    target: str
    values: dict[str, tuple[Any, bool | None]] = field(default_factory=dict)


def target_rows(results: dict[str, Any]) -> list[Row]:
    """The targets of every profile merged by (scenario, figure), in the order they were
    first met; a scenario that failed on a profile gives an `error` row there."""
    rows: dict[tuple[str, str], Row] = {}
    for profile, outcome in results["profiles"].items():
        for name, scenario in outcome["scenarios"].items():
            if "error" in scenario:
                row = rows.setdefault((name, "error"), Row(name, "error", ""))
                row.values[profile] = (scenario["error"], False)
                continue
            for target in scenario.get("targets", []):
                row = rows.setdefault((name, target["name"]),
                                      Row(name, target["name"], target["target"]))
                row.values[profile] = (target["value"], target["met"])
    return list(rows.values())


def _cell(value: tuple[Any, bool | None] | None) -> str:
    if value is None:
        return ""
    figure, met = value
    return f"{figure} {'✓' if met else '✗'}" if met is not None else str(figure)


def render_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    profiles = list(results["profiles"])
    judged = results.get("judged_on")
    postgres = f", PostgreSQL {machine['postgresql']}" if machine.get("postgresql") else ""
    lines = [
        "# Liaison benchmarks",
        "",
        f"{machine['date']} · {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine.get('memory_gib')} GiB · load at start {machine.get('load_average_at_start')}"
        f" · Python {machine['python']}, matrix-nio {machine['matrix_nio']}, vodozemac "
        f"{machine['vodozemac']}, Synapse {machine['synapse']}{postgres} · commit "
        f"{(machine.get('commit') or '?')[:10]}{' (dirty)' if machine.get('dirty') else ''}"
        f"{' · --quick' if results['options']['quick'] else ''}"
        + (f" · {results['seconds']:.0f} s" if "seconds" in results else ""),
        "",
        *(f"- {profile}: load at start {results['profiles'][profile].get('load_average_at_start')}"
          f", at end {results['profiles'][profile].get('load_average_at_end')}, "
          f"{results['profiles'][profile].get('seconds')} s" for profile in profiles),
        "",
        f"Targets are judged on **{judged}**; the other profiles are reported." if judged
        in profiles else "",
        f"The profiles ran as {results['merged_from']} processes at the same time on this "
        "machine (merged with `--merge`); each ratio is still of figures measured side by "
        "side within one profile." if results.get("merged_from", 1) > 1 else "",
        "",
        "| scenario | figure | target | " + " | ".join(profiles) + " |",
        "|---|---|---|" + "---|" * len(profiles),
    ]
    for row in target_rows(results):
        cells = " | ".join(_cell(row.values.get(profile)) for profile in profiles)
        lines.append(f"| {row.scenario} | {row.figure} | {row.target} | {cells} |")
    lines += ["", "## Details", ""]
    for profile in profiles:
        for name, outcome in results["profiles"][profile]["scenarios"].items():
            for line in outcome.get("notes", []):
                lines.append(f"- {profile} · {name}: {line}")
            for label, value in outcome.get("headline", {}).items():
                lines.append(f"- {profile} · {name}: {label}: {value}")
    return "\n".join(lines) + "\n"
