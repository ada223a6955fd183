"""Integration tests load real packaged models once per module; BFCL data comes from ../shared."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "bfcl_v4"


@pytest.fixture(scope="session")
def bfcl_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"BFCL data not found at {SHARED}")
    return SHARED
