"""Shared fixtures. The reference material (goldens, manifests, real faces) lives in ../shared
beside the checkout; it is read, never copied. Tests needing it skip with a reason in a user's
clone; CI sets VQFR_EVAL_REQUIRE_SHARED=1, which turns that skip into a failure."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VQFR_EVAL_SHARED", REPO.parent / "shared"))
REQUIRE_SHARED = os.environ.get("VQFR_EVAL_REQUIRE_SHARED") == "1"


def _need_shared(sub: str = "") -> Path:
    path = SHARED / sub
    if not path.exists():
        message = (f"reference material {path} is absent (it sits beside the checkout as "
                   "../shared in the project's workspace; set VQFR_EVAL_SHARED to point at it)")
        if REQUIRE_SHARED:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared: reference/ (manifests, goldens, metric values) and faces/ (real 512x512 crops)."""
    return _need_shared()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    return _need_shared("reference")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return _need_shared("faces")


@pytest.fixture(scope="session")
def synth_weights():
    """The reference synthetic-weights rule (../shared/reference/synth_weights.py) as a module:
    ``synth_weights.synth_state_dict(manifest_dict, seed)``."""
    path = _need_shared("reference/synth_weights.py")
    spec = importlib.util.spec_from_file_location("reference_synth_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
