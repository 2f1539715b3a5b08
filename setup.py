"""Packages are found, never listed: every folder with an ``__init__.py`` under one of setup.cfg's
``package_dir`` roots is a subpackage (``ir/ops`` -> ``sdflow.ir.ops``), so the wheel cannot drift from the tree."""
import configparser
import pathlib

from setuptools import find_packages, setup

ROOT = pathlib.Path(__file__).resolve().parent


def package_roots() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["package_dir"].strip().splitlines()
    return {name.strip(): folder.strip() for name, folder in (line.split("=", 1) for line in lines)}


def packages() -> list[str]:
    found = []
    for name, folder in package_roots().items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(where=str(ROOT / folder))]
    return sorted(found)


if __name__ == "__main__":
    setup(packages=packages())
