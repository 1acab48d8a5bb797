"""The project's shipped artifacts, installed as the package ``ofa_latency.data``: the GPU spec
table (``hardware.csv``), the shipped predictors (``predictors/``, listed with their sha256 in
``predictors/manifest.json``) and OFA net-config templates (``net_configs/``). Measurements and
benchmark results in this folder stay in the repository."""
