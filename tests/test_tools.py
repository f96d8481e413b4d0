"""The hand-run tools still run: the corpus benchmark and the atheris fuzz target's body."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_runs_on_a_few_policies():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "corpus.py"), "--limit", "3", "--rates", "0.3,services"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.strip().startswith(("30%", "services"))]
    assert len(rows) == 2 and all(row.split()[4] == "0" for row in rows)  # no failures


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_fuzz_target_accepts_its_seeds():
    sys.path.insert(0, str(ROOT / "fuzz"))
    import fuzz_refiner

    for seed in sorted((ROOT / "fuzz" / "seeds").iterdir()):
        fuzz_refiner.test_one_input(seed.read_bytes())
    fuzz_refiner.test_one_input(b"not json\0[]")


def test_every_subpackage_ships():
    """pyproject.toml lists packages explicitly: a new subpackage missing there is absent from
    wheels (an editable install hides it)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(re.search(r"^packages = \[(.*)\]", (root / "pyproject.toml").read_text(),
                           re.MULTILINE)[1].replace('"', "").replace(" ", "").split(","))
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "refiner").rglob("__init__.py")}
    assert found <= listed
