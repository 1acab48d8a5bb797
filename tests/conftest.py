import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# public reference data (HELP's GPU latencies, OFA's Note10 LUT), read by the path CI and
# `make test` pass; tests that need it skip without it
SHARED = Path(os.environ.get("OFA_LATENCY_SHARED_DATA", "/nonexistent/shared-data"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep what the package caches (OFA's accuracy predictor as safetensors) out of the
    user's home while testing."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def mbv3():
    from ofa_latency import get_space

    return get_space("ofa_mbv3_w1.2")


@pytest.fixture(scope="session")
def help_dir():
    d = Path(os.environ.get("OFA_LATENCY_HELP_DIR", SHARED / "help_ofa_mbv3_w1.2"))
    if not (d / "ofa_archs.pt").exists():
        pytest.skip(f"HELP reference data not found at {d}")
    return d


@pytest.fixture
def smallest(mbv3):
    """The cheapest subnet of ofa_mbv3_w1.2 (fast to export and run)."""
    return mbv3.validate({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "image_size": 128})


@pytest.fixture(scope="session")
def help_dir_or_none():
    """HELP's folder when present, else None (for tests that use it only in part)."""
    d = Path(os.environ.get("OFA_LATENCY_HELP_DIR", SHARED / "help_ofa_mbv3_w1.2"))
    return d if (d / "ofa_archs.pt").exists() else None
