"""Packaging glue: the folders api/, core/, plugins/ and cli/ stay at the repository root
and install as pycontainerd.api, pycontainerd.core, pycontainerd.plugins, pycontainerd.cli."""

from setuptools import find_packages, setup

_ROOTS = ("api", "core", "plugins", "cli")

packages = ["pycontainerd"]
package_dir = {"pycontainerd": "pycontainerd"}
for root in _ROOTS:
    for pkg in [root, *(root + "." + p for p in find_packages(root))]:
        packages.append("pycontainerd." + pkg)
        package_dir["pycontainerd." + pkg] = pkg.replace(".", "/")

setup(packages=packages, package_dir=package_dir, package_data={"pycontainerd.api": ["**/*.proto"]})
