"""The pure layers import no dask, distributed, h5py or zarr; ``import dask_io`` is cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("dask", "distributed", "h5py", "zarr")


def loaded_after(code: str) -> list[str]:
    """Heavy top-level packages in ``sys.modules`` after running ``code`` in a fresh process."""
    probe = (
        f"{code}\nimport sys\n"
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120)
    return out.stdout.split()


@pytest.mark.parametrize(
    "code",
    [
        "import dask_io",
        "import dask_io.plan",
        "import dask_io.sketches",
        "import dask_io.errors",
        "import dask_io; dask_io.plan_resplit((8, 8), (4, 4), (2, 8), 'uint8', 256)",
        "from dask_io.plan import plan_resplit; "
        "list(plan_resplit((8, 8), (4, 4), (2, 8), 'uint8', 256, 'keep').operations())",
    ],
)
def test_pure_imports_load_no_heavy_package(code: str) -> None:
    assert loaded_after(code) == []


def test_the_probe_sees_heavy_packages() -> None:
    """The check above can fail: importing the array side does load dask."""
    assert "dask" in loaded_after("import dask.array")
