"""Shared fixtures: the embedded catalog (loaded once) and import paths for test helpers."""

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=60
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=600)
settings.load_profile("default")


@pytest.fixture(scope="session")
def catalog():
    from refiner.catalog import load_default

    return load_default()


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
