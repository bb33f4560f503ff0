"""Build benchmarks/RESULTS.md from the per-topic result pages in benchmarks/results/.

Each benchmark script writes its own page (with the exact command, the date and the
machine's load); this script puts them together, in a fixed order, under one header:

    python benchmarks/collect_results.py
"""

from __future__ import annotations

import pathlib

HERE = pathlib.Path(__file__).parent
ORDER = ["plan", "resplit", "optimize", "distributed", "bag", "sketches"]

HEADER = """# dask_io benchmark results

Every number below was measured on the project's machine (2 cores, 24 GiB, a shared and
noisy VM; several agents were running tests at the same time, so timings are quoted as
medians and ratios to a baseline measured in the same run). Each section names the
command that produced it; `python benchmarks/collect_results.py` rebuilds this page from
`benchmarks/results/*.md`. The protocol is the project's BENCHMARKING.md.

"""


def main() -> None:
    pages = {p.stem: p for p in sorted((HERE / "results").glob("*.md"))}
    names = [n for n in ORDER if n in pages] + sorted(set(pages) - set(ORDER))
    parts = [HEADER, "## Contents\n\n"]
    parts += [f"- [{name}](#{name})\n" for name in names]
    for name in names:
        text = pages[name].read_text().strip()
        parts.append(f"\n\n<a id=\"{name}\"></a>\n\n{_demote(text)}\n")
    (HERE / "RESULTS.md").write_text("".join(parts))
    print(f"wrote {HERE / 'RESULTS.md'} from {len(names)} pages")


def _demote(text: str) -> str:
    """Push every heading one level down so each page sits under the page title."""
    return "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())


if __name__ == "__main__":
    main()
