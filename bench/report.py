"""The short human-readable table of a run (`latest.md`)."""

from __future__ import annotations

from typing import Any


def render_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# Liaison benchmarks",
        "",
        f"{machine['date']} · {machine['cpu_model']}, {machine['cores']} cores, "
        f"{machine.get('memory_gib')} GiB · load at start {machine.get('load_average_at_start')}"
        f" · Python {machine['python']}, matrix-nio {machine['matrix_nio']}, vodozemac "
        f"{machine['vodozemac']}, Synapse {machine['synapse']} · commit "
        f"{(machine.get('commit') or '?')[:10]}{' (dirty)' if machine.get('dirty') else ''}"
        f"{' · --quick' if results['options']['quick'] else ''}",
        "",
        "| scenario | figure | value | target | met |",
        "|---|---|---|---|---|",
    ]
    for name, outcome in results["scenarios"].items():
        if "error" in outcome:
            lines.append(f"| {name} | error | {outcome['error']} | | ✗ |")
            continue
        for target in outcome.get("targets", []):
            mark = "✓" if target["met"] else "✗"
            lines.append(f"| {name} | {target['name']} | {target['value']} | "
                         f"{target['target']} | {mark} |")
    lines += ["", "## Details", ""]
    for name, outcome in results["scenarios"].items():
        for line in outcome.get("notes", []):
            lines.append(f"- {name}: {line}")
        for label, value in outcome.get("headline", {}).items():
            lines.append(f"- {name}: {label}: {value}")
    return "\n".join(lines) + "\n"
