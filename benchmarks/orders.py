"""Order logs for the bag benchmarks: CSV lines and their exact answers.

Each line is ``<timestamp>, <country>, <customer_id>, <product_id>, <price>``
(the lecture's order-log format). Countries and products are Zipf-skewed,
customers too (with at least ``customers`` distinct ids drawn from), prices are
cents in [1.00, 500.00]. Everything derives from one seed, and the generator
keeps the drawn arrays, so the benchmark checks every engine's answer against
numpy computations on those arrays.

Only the standard library and numpy are imported, so the PySpark process (its
own virtual environment) can import this module too.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

COUNTRIES = [
    "Poland", "USA", "Brazil", "Germany", "India", "France", "Japan", "Mexico", "Spain",
    "Italy", "Canada", "Turkey", "Korea", "Chile", "Sweden", "Norway", "Kenya", "Peru",
    "Egypt", "Vietnam",
]  # fmt: skip
NCATEGORIES = 60


@dataclass
class Orders:
    """The generated data set: files on disk plus the arrays they were written from."""

    folder: str
    files: list[str]
    country: np.ndarray  # index into COUNTRIES, per line
    customer: np.ndarray  # customer number, per line
    product: np.ndarray  # product number, per line
    cents: np.ndarray  # price in cents, per line
    product_category: np.ndarray  # category number, per product

    @property
    def nlines(self) -> int:
        return len(self.country)

    def products_table(self) -> list[tuple[str, str]]:
        """The product dimension table: ``(product_id, category)`` rows."""
        return [(product_id(p), category_name(c)) for p, c in enumerate(self.product_category)]


def customer_id(c: int) -> str:
    return f"User{c}"


def product_id(p: int) -> str:
    return f"Product{p}"


def category_name(c: int) -> str:
    return f"cat{c:02d}"


def _zipf_ranks(rng: np.random.Generator, n: int, size: int, a: float) -> np.ndarray:
    """Ranks in ``[0, n)`` with Zipf(a)-like frequencies, shuffled identities."""
    weights = 1.0 / np.arange(1, n + 1) ** a
    ranks = rng.choice(n, size=size, p=weights / weights.sum())
    return rng.permutation(n)[ranks]


def generate(
    folder: str,
    lines: int = 2_000_000,
    nfiles: int = 40,
    customers: int = 200_000,
    products: int = 100_000,
    seed: int = 0,
) -> Orders:
    """Write (or reuse) the order-log files under ``folder``; return the data set."""
    rng = np.random.default_rng(seed)
    country = _zipf_ranks(rng, len(COUNTRIES), lines, 1.2)
    customer = _zipf_ranks(rng, customers, lines, 0.8)
    product = _zipf_ranks(rng, products, lines, 1.0)
    cents = rng.integers(100, 50_001, size=lines)
    product_category = _zipf_ranks(rng, NCATEGORIES, products, 0.7)
    ts = 1_652_658_000_000 + np.sort(rng.integers(0, 86_400_000, size=lines))
    orders = Orders(folder, [], country, customer, product, cents, product_category)
    stamp = os.path.join(folder, "params.json")
    params = {"lines": lines, "nfiles": nfiles, "customers": customers,
              "products": products, "seed": seed}  # fmt: skip
    orders.files = [os.path.join(folder, f"log-{i:04d}.csv") for i in range(nfiles)]
    if _stamp_matches(stamp, params):
        return orders
    os.makedirs(folder, exist_ok=True)
    for i, idx in enumerate(np.array_split(np.arange(lines), nfiles)):
        _write_file(orders.files[i], idx, ts, country, customer, product, cents)
    with open(stamp, "w") as f:
        json.dump(params, f)
    return orders


def _stamp_matches(stamp: str, params: dict) -> bool:
    try:
        with open(stamp) as f:
            return json.load(f) == params
    except (OSError, ValueError):
        return False


def _write_file(path, idx, ts, country, customer, product, cents) -> None:
    import datetime as dt

    base = dt.datetime(2022, 5, 16)
    rows = []
    for i in idx.tolist():
        ms = int(ts[i] - 1_652_658_000_000)
        stamp = (base + dt.timedelta(milliseconds=ms)).isoformat(sep=" ", timespec="milliseconds")
        c = int(cents[i])
        rows.append(
            f"{stamp}, {COUNTRIES[country[i]]}, User{customer[i]}, Product{product[i]}, "
            f"{c // 100}.{c % 100:02d}\n"
        )
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(rows)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- exact answers


def top_customers(orders: Orders, country: str = "Poland", k: int = 100) -> list[tuple[str, int]]:
    """The ``k`` customers of ``country`` who spent most: ``(customer_id, cents)``."""
    mask = orders.country == COUNTRIES.index(country)
    spend = np.bincount(orders.customer[mask], weights=orders.cents[mask])
    top = np.argsort(-spend, kind="stable")[:k]
    return [(customer_id(c), round(float(spend[c]))) for c in top.tolist()]


def spend_per_category(orders: Orders) -> dict[str, int]:
    """Total spend in cents per product category."""
    cats = orders.product_category[orders.product]
    spend = np.bincount(cats, weights=orders.cents, minlength=NCATEGORIES)
    return {category_name(c): round(s) for c, s in enumerate(spend.tolist()) if s}


def lines_per_country(orders: Orders) -> dict[str, int]:
    counts = np.bincount(orders.country, minlength=len(COUNTRIES))
    return {COUNTRIES[i]: int(n) for i, n in enumerate(counts.tolist())}


def lines_of_customers(orders: Orders, kept: np.ndarray) -> int:
    """How many lines belong to the customers flagged in ``kept`` (a bool per customer)."""
    return int(kept[orders.customer].sum())


# --------------------------------------------------------------------------- batch parsers
# The same per-partition parsers serve every Python engine (dask_io, dask.bag, PySpark
# RDDs): one list comprehension over a partition's lines, not one call per record.


def _cents(text: str) -> int:
    units, _, frac = text.partition(".")
    return int(units) * 100 + int((frac + "00")[:2])


def parse_orders(lines):
    """``(timestamp, country, customer, product, cents)`` tuples."""
    out = []
    for line in lines:
        f = line.rstrip("\n").split(", ")
        out.append((f[0], f[1], f[2], f[3], _cents(f[4])))
    return out


def poland_spend(lines):
    """``(customer, cents)`` for the lines from Poland."""
    out = []
    for line in lines:
        f = line.split(", ")
        if f[1] == "Poland":
            out.append((f[2], _cents(f[4])))
    return out


def product_spend(lines):
    """``(product, cents)`` for every line."""
    out = []
    for line in lines:
        f = line.split(", ")
        out.append((f[3], _cents(f[4])))
    return out


def country_lines(lines):
    """``(country, line)`` pairs for stratified sampling."""
    return [(line.split(", ", 2)[1], line) for line in lines]


def customer_lines(lines):
    """``(customer, line)`` pairs for sampling by customer."""
    return [(line.split(", ", 3)[2], line) for line in lines]


# --------------------------------------------------------------------------- column batches
# The same data parsed a whole file at a time into pyarrow columns (no Python object
# per line): dask_io.bag.PairBatch partitions for the recipes' array paths.


FIELDS = ["ts", "country", "customer", "product", "price"]


def read_raw(paths):
    """The five comma-separated fields of every line of ``paths`` as pyarrow strings,
    each but the first with the leading space of ``", "`` (pyarrow's CSV reader)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    ro = pcsv.ReadOptions(column_names=FIELDS, use_threads=False, block_size=1 << 24)
    po = pcsv.ParseOptions(delimiter=",", quote_char=False)
    co = pcsv.ConvertOptions(column_types=dict.fromkeys(FIELDS, pa.string()))
    tables = [pcsv.read_csv(p, read_options=ro, parse_options=po, convert_options=co)
              for p in paths]  # fmt: skip
    table = pa.concat_tables(tables).combine_chunks()
    return {name: table[name].chunk(0) if table[name].num_chunks else table[name]
            for name in FIELDS}  # fmt: skip


def strip(col):
    """A field without its leading space."""
    import pyarrow.compute as pc

    return pc.utf8_slice_codeunits(col, 1)


def read_columns(paths):
    """The lines of ``paths`` (without newline) and their five fields, as pyarrow arrays."""
    import pyarrow.compute as pc

    raw = read_raw(paths)
    lines = pc.binary_join_element_wise(*[raw[n] for n in FIELDS], ",")
    cols = {n: raw[n] if n == "ts" else strip(raw[n]) for n in FIELDS}
    return lines, cols


def price_cents(price):
    """Prices written with two decimals (``"12.34"``) to int64 cents, exactly."""
    import pyarrow.compute as pc

    return pc.cast(pc.replace_substring(pc.utf8_trim_whitespace(price), ".", ""),
                   "int64").to_numpy()  # fmt: skip


def poland_spend_batch(paths):
    """:func:`poland_spend` as one ``PairBatch`` of ``(customer, cents)``."""
    import pyarrow.compute as pc

    from dask_io.bag import PairBatch

    raw = read_raw(paths)
    mask = pc.equal(raw["country"], " Poland")
    return PairBatch(strip(raw["customer"].filter(mask)), price_cents(raw["price"].filter(mask)))


def product_spend_batch(paths):
    """:func:`product_spend` as one ``PairBatch`` of ``(product, cents)``."""
    from dask_io.bag import PairBatch

    raw = read_raw(paths)
    return PairBatch(strip(raw["product"]), price_cents(raw["price"]))


def country_lines_batch(paths):
    """:func:`country_lines` as one ``PairBatch``."""
    from dask_io.bag import PairBatch

    lines, c = read_columns(paths)
    return PairBatch(c["country"], lines)


def customer_lines_batch(paths):
    """:func:`customer_lines` as one ``PairBatch``."""
    from dask_io.bag import PairBatch

    lines, c = read_columns(paths)
    return PairBatch(c["customer"], lines)
