"""Which top-level folders are the product, and how they are named once installed.

The repository keeps its plain layout (`bot/`, `commands/`, `storage/`, …: a newcomer
finds things by folder), while an installed Liaison claims one import name only:
every product folder is the subpackage `liaison.<folder>` (`setup.py` maps them with
`package_dir`, so site-packages gets `liaison/` and nothing else). A product folder is
any top-level folder with an `__init__.py` that is not a tool of the checkout
(`NOT_SHIPPED`), so a new one ships without anyone remembering to list it.

`python -m devkit.layout typecheck-tree` makes `build/typecheck/liaison/`, one symlink
per product folder: mypy cannot follow setuptools' editable-install import hook, so it
reads the product under its installed names through that tree (`mypy_path`). The tree
is rebuilt by `make setup` and `make lint`; it is never committed.

Standard library only: `setup.py` imports it in the build's own environment.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTION = "liaison"
"""The distribution and the one import name it installs."""
NOT_SHIPPED = frozenset({"devkit", "tests", "bench"})
"""Top-level packages of the checkout that stay out of the wheel (the sdist has them)."""
TYPECHECK_TREE = Path("build") / "typecheck"


def product_packages(root: Path = ROOT) -> list[str]:
    """The top-level folders that ship, as `liaison.<folder>`, sorted."""
    return sorted(
        entry.name for entry in root.iterdir()
        if entry.is_dir() and (entry / "__init__.py").is_file()
        and entry.name.isidentifier() and entry.name not in NOT_SHIPPED
    )


def installed_name(folder: str) -> str:
    return f"{DISTRIBUTION}.{folder}"


def typecheck_tree(root: Path = ROOT) -> Path:
    """(Re)make `build/typecheck/liaison/<folder>` -> `<folder>` for every product folder;
    returns the tree's base (what `mypy_path` names)."""
    base = root / TYPECHECK_TREE
    package = base / DISTRIBUTION
    package.mkdir(parents=True, exist_ok=True)
    wanted = set(product_packages(root))
    for link in package.iterdir():
        if link.is_symlink() and link.name not in wanted:
            link.unlink()
    for folder in sorted(wanted):
        link = package / folder
        target = Path("..", "..", "..", folder)
        if link.is_symlink() and Path(link.readlink()) == target:
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)
    return base


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["typecheck-tree"]:
        typecheck_tree()
        return 0
    if args == ["packages"]:
        print(" ".join(product_packages()))
        return 0
    print("usage: python -m devkit.layout typecheck-tree|packages", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
