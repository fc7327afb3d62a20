"""`python -m devkit.namespace [--check]`: rewrite the checkout's references to the
product's modules from their folder names (`bot.config`) to their installed names
(`liaison.bot.config`, see `devkit.layout`).

Mechanical and idempotent, so that it can be run again after merging branches that
still use the old names; it changes nothing already rewritten. In every tracked text
file it rewrites:

- `from bot.x import …` (and `from bot import …`) at the start of a line, and
  `import bot.x as y`;
- `"-m", "bot"` (a subprocess running the product as a module) and `-m bot` in the
  Makefile, scripts and docs;
- a string naming a product module (or something in one) where modules are named:
  `logger="bot.app"`, `getLogger("bot.sender")`, `monkeypatch.setattr("bot.chaser.X", …)`,
  `files("storage")`, comparisons with a record's logger name; strings elsewhere (message
  ids such as "bot.undecryptable", config paths such as "bot.password") are left alone;
- in pyproject.toml, the console script's target and mypy's `packages`.

Then `ruff check --select I --fix` re-sorts the rewritten imports (`liaison` sorts after
`devkit`). `--check` changes nothing and exits 1 if anything would change; both modes
list what they leave for a person: a bare `import bot.x` (its uses would change too) and
module-like strings outside the contexts above.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devkit.layout import DISTRIBUTION, ROOT, product_packages

TEXT_SUFFIXES = frozenset({".py", ".md", ".toml", ".cfg", ".txt", ".yaml", ".yml", ".service",
                           ".sh", ".in"})
TEXT_NAMES = frozenset({"Makefile", "Containerfile", "run"})
SKIPPED = frozenset({"devkit/namespace.py", "tests/unit/test_namespace.py", "CHANGELOG.md"})
"""The rewrite's own description and tests show the old names on purpose; the changelog
is history."""
MODULE_CONTEXTS = ("logger=", "getLogger(", "setattr(", "patch(", "files(", ".name ==",
                   '["logger"] ==', "logger ==")
"""Where a string literal names a module (or a name in one)."""


@dataclass
class Rewrite:
    changed: dict[Path, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _names(packages: Sequence[str]) -> str:
    return "|".join(re.escape(name) for name in packages)


def _module_exists(root: Path, dotted: str) -> bool:
    """True when a leading part of `dotted` is a module or package of the checkout."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:end])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return True
    return False


def rewrite_python(text: str, packages: Sequence[str], root: Path,
                   note: Callable[[str], None]) -> str:
    names = _names(packages)
    prefix = DISTRIBUTION + "."
    text = re.sub(rf"(?m)^(\s*from\s+)({names})((?:\.\w+)*\s+import\b)", rf"\1{prefix}\2\3",
                  text)
    text = re.sub(rf"(?m)^(\s*import\s+)({names})((?:\.\w+)*\s+as\s+\w+\s*)$",
                  rf"\1{prefix}\2\3", text)
    text = re.sub(rf"""(["'])-m\1(\s*,\s*)(["'])({names})\3""", rf"\1-m\1\2\3{prefix}\4\3",
                  text)
    text = rewrite_text(text, packages)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if re.match(rf"\s*import\s+({names})(\.\w+)*\s*$", line):
            note(f"{number}: `{line.strip()}` left as it is: rewrite it and its uses by hand")
        literal = re.compile(rf"""(["'])((?:{names})(?:\.\w+)*)\1""")
        if any(context in line for context in MODULE_CONTEXTS):
            lines[number - 1] = literal.sub(
                lambda m: (f"{m.group(1)}{prefix}{m.group(2)}{m.group(1)}"
                           if _module_exists(root, m.group(2)) else m.group(0)), line)
            continue
        for match in literal.finditer(line):
            dotted = match.group(2)
            if "." in dotted and _module_exists(root, dotted) and \
                    root.joinpath(*dotted.split(".")).with_suffix(".py").is_file():
                note(f"{number}: the string {match.group(0)} names a module; left as it is")
    return "\n".join(lines)


def rewrite_text(text: str, packages: Sequence[str]) -> str:
    names = _names(packages)
    return re.sub(rf"(-m\s+)({names})\b(?!\.)", rf"\1{DISTRIBUTION}.\2", text)


def rewrite_pyproject(text: str, packages: Sequence[str]) -> str:
    names = _names(packages)
    text = rewrite_text(text, packages)
    text = re.sub(rf'(?m)^(\w[\w-]*\s*=\s*")({names})((?:\.\w+)*:\w+")',
                  rf"\1{DISTRIBUTION}.\2\3", text)

    def mypy_packages(match: re.Match[str]) -> str:
        listed = re.findall(r'"([^"]+)"', match.group(2))
        kept = [name for name in listed if name not in packages]
        if DISTRIBUTION not in kept:
            kept.insert(0, DISTRIBUTION)
        return match.group(1) + ", ".join(f'"{name}"' for name in kept) + "]"

    return re.sub(r"(?ms)(^\[tool\.mypy\].*?^packages\s*=\s*\[)([^\]]*)\]", mypy_packages,
                  text, count=1)


def tracked_files(root: Path) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True,
                            capture_output=True).stdout.decode().split("\0")
    files = []
    for name in sorted(filter(None, listed)):
        path = root / name
        if name in SKIPPED or path.is_symlink() or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(path)
    return files


def plan(root: Path = ROOT) -> Rewrite:
    packages = product_packages(root)
    result = Rewrite()
    for path in tracked_files(root):
        before = path.read_text(encoding="utf-8")
        relative = path.relative_to(root).as_posix()

        def note(message: str, relative: str = relative) -> None:
            result.notes.append(f"{relative}:{message}")

        if path.suffix == ".py":
            after = rewrite_python(before, packages, root, note)
        elif path.name == "pyproject.toml":
            after = rewrite_pyproject(before, packages)
        else:
            after = rewrite_text(before, packages)
        if after != before:
            result.changed[path] = after
    return result


def sort_imports(root: Path, paths: Sequence[Path]) -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).is_file():
        print("ruff not found: sort the rewritten imports with `ruff check --select I --fix`")
        return
    subprocess.run([ruff, "check", "--quiet", "--select", "I", "--fix",
                    *[str(path) for path in paths]], cwd=root, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args not in ([], ["--check"]):
        print("usage: python -m devkit.namespace [--check]", file=sys.stderr)
        return 2
    result = plan()
    for line in result.notes:
        print(f"note: {line}")
    if args == ["--check"]:
        for path in result.changed:
            print(f"would rewrite {path.relative_to(ROOT)}")
        return 1 if result.changed else 0
    for path, text in result.changed.items():
        path.write_text(text, encoding="utf-8")
    python = [path for path in result.changed if path.suffix == ".py"]
    if python:
        sort_imports(ROOT, python)
    print(f"rewrote {len(result.changed)} files "
          f"(product packages: {', '.join(product_packages())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
