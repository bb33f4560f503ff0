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

Faults survived (full disks, I/O errors, read-only targets, concurrent writers, corrupted
state; issue 15): the table of every fault tried, on which entry points and what the
user sees, is [docs/faults.md](../docs/faults.md).

## Targets at a glance (2026-11-23, second stop)

| issue | target | result |
|---|---|---|
| 2, 11 plan | 1 TiB case planned in < 5 s; 3500³ cases < 2 s | 0.63 s, 1.000× lower bound: met; 0.1–1.4 s: met |
| 2, 11 plan | auto ≤ 1.25× lower bound, 3500³ 350³→500³ / 175³→250³ at 4 GiB | 1.328× missed / 1.000× met |
| 11 plan | auto within 1.1× of a blind box search on every case (7 paper + 30 random) | worst 1.000 (seeks), 1.005 (seconds): met; 3900×3000×3500: 804 seeks (was 40,004) |
| 11 plan | predicted within 25 % of measured after calibrate; time-chosen never slower | 0.22–0.93×: missed; not shown (loaded machine) |
| 2 plan | ≥ 1000× fewer runs than naive on the 3500³ cases | 34,777× – 399,457×: met |
| 3 resplit | keep/auto within 1.5× of `cp`, 2 GiB mismatched resplit, cold | auto 1.55× (earlier run 1.25×; `cp` itself 2.4 s vs 4.0 s); keep 1.75× |
| 3 resplit | ≥ 2× faster than plain Dask on it | auto 2.2× met (split 2.1×, merge 2.8×) |
| 3 resplit | peak RSS ≤ max_mem + 200 MiB; every source byte read once | met; met |
| 3 resplit | Zarr → Zarr | 4.6 s: 3.4× faster than Dask, 2.6× than rechunker (was slower than both) |
| 4 optimize | `optimize()` < 1 s on 100k tasks | 0.19 s on 121k: met |
| 4 optimize | ≥ 2× faster on split and resplit, never slower | split 2.29× met; resplit 1.72× missed; merge 2.39×; never slower: met |
| 5 distributed | faster than every other method (1024³, cold, medians of 3) | met: mismatched 3.9 s vs 12.9–21.3 s (1.43× cp); pancake 10.7 s vs 18.0–27.9 s (3.2× cp) |
| 5 distributed | source chunks read once; worker RSS ≤ max_mem + 200 MiB | met; met (668 / 373 MiB ≤ 712 MiB) |
| 5 distributed | 1 TiB planning-only simulation, 64 workers | pancake plans in 3.0 s (was > 5 min), mismatched 1.3 s |
| 6 sketches | ≥ 20 M int64/s per core per sketch | HLL 39.8 M, CMS 71.3 M met; Bloom 6.7 M missed |
| 6 sketches | ≥ 3 M strings/s; faster than per-item libraries | met; except HLL strings 0.9× datasketches |
| 7 bag | faster than Spark RDD on every workload; within 1.25× of DataFrame | met; met (one run) |
| 7 bag | broadcast join ≥ 3× dask.bag `join` | 3.4×: met |

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
