"""Execute one notebook in place of a temporary copy; exit non-zero on any cell error."""

import sys
import time

import nbformat
from nbclient import NotebookClient


def main(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3").execute()
    print(f"{path}: {len(nb.cells)} cells ok in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1])
