"""Packages are discovered; the project's shipped artifacts (``data/``: the GPU spec table, the
shipped predictors, OFA net-config templates) are installed as the package ``ofa_latency.data``.
Everything else is in setup.cfg."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["ofa_latency", "ofa_latency.*"]) + ["ofa_latency.data"],
      package_dir={"ofa_latency.data": "data"})
