"""What pyproject.toml cannot say: the product folders are installed under one name,
and the gettext catalogues are compiled into the wheel.

- Every product folder (`devkit.layout.product_packages`: `bot/`, `commands/`,
  `storage/`, …) becomes `liaison.<folder>` through `package_dir`, so a wheel puts
  `liaison/` and nothing else into site-packages, while the checkout keeps its layout.
- `build_py` compiles each `commands/locale/*/LC_MESSAGES/*.po` into the `.mo` beside
  it in the build (the repository and the sdist hold only the `.po` sources).
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from devkit.layout import installed_name, product_packages  # noqa: E402  (stdlib only)

LOCALE = Path("commands") / "locale"


class BuildWithCatalogues(build_py):
    """`build_py`, then the compiled catalogues beside their `.po` in the build."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # a checkout compiles its own (`python -m devkit.catalogues compile`)
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po in sorted((ROOT / LOCALE).glob("*/LC_MESSAGES/*.po")):
            language = po.relative_to(ROOT / LOCALE).parts[0]
            mo = Path(self.build_lib, *installed_name("commands").split("."),
                      po.relative_to(ROOT / "commands").with_suffix(".mo"))
            mo.parent.mkdir(parents=True, exist_ok=True)
            with po.open("rb") as source:
                catalog = read_po(source, locale=language)
            with mo.open("wb") as target:
                write_mo(target, catalog, use_fuzzy=False)


def packages() -> tuple[list[str], dict[str, str]]:
    names: list[str] = []
    directories: dict[str, str] = {}
    for folder in product_packages(ROOT):
        directories[installed_name(folder)] = folder
        names.append(installed_name(folder))
        names += [f"{installed_name(folder)}.{sub}" for sub in find_packages(str(ROOT / folder))]
    return names, directories


PACKAGES, PACKAGE_DIR = packages()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR, cmdclass={"build_py": BuildWithCatalogues})
