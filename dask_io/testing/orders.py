"""Synthetic order logs for the bag recipes, their benchmarks and notebooks.

An order log is CSV lines ``<timestamp>, <country>, <customer_id>, <product_id>, <price>``
spread over several files, with Zipf-skewed countries and products and a fixed
seed. :func:`generate_orders` returns the columns as numpy arrays, so every exact
answer (distinct customers, top products, per-country counts) is one numpy call
away; :func:`write_orders` writes the same records as text files and
:func:`parse_order` reads one line back.

>>> cols = generate_orders(1000, seed=1)
>>> sorted(cols)
['country', 'customer_id', 'price', 'product_id', 'timestamp']
>>> line = format_orders(cols, 0, 1)[0]
>>> parse_order(line) == order_record(cols, 0)
True
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "COUNTRIES",
    "format_orders",
    "generate_orders",
    "order_record",
    "parse_order",
    "write_orders",
]

COUNTRIES = (
    "US", "CN", "DE", "JP", "GB", "FR", "IN", "IT", "BR", "CA", "KR", "RU", "ES", "AU",
    "MX", "ID", "NL", "SA", "TR", "CH", "PL", "SE", "BE", "TH", "AT", "NO", "IE", "IL",
    "DK", "SG",
)  # fmt: skip
_START = np.datetime64("2024-01-01T00:00:00", "s")


def _zipf_choice(
    rng: np.random.Generator, n_values: int, size: int, exponent: float
) -> npt.NDArray[np.int64]:
    """``size`` draws from ranks ``0 .. n_values - 1`` with P(rank k) ∝ 1 / (k + 1)^exponent."""
    weights = 1.0 / np.arange(1, n_values + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    draws = np.searchsorted(cdf, rng.random(size), side="right")
    return np.minimum(draws, n_values - 1).astype(np.int64)


def generate_orders(
    n: int,
    seed: int = 0,
    *,
    n_customers: int | None = None,
    n_products: int = 50_000,
    days: int = 30,
) -> dict[str, npt.NDArray[Any]]:
    """The columns of ``n`` orders, in time order.

    Parameters
    ----------
    n
        Number of orders.
    seed
        Seed of the generator: the same seed gives the same orders.
    n_customers
        Customer ids are uniform in ``[0, n_customers)``; default ``max(10, n // 10)``.
    n_products
        Product ids are Zipf-distributed (exponent 1.1) over ``[0, n_products)``.
    days
        Timestamps are spread over this many days from 2024-01-01.

    Returns
    -------
    dict of numpy arrays
        ``timestamp`` (datetime64[s]), ``country`` (index into :data:`COUNTRIES`,
        Zipf exponent 1.2), ``customer_id``, ``product_id`` (int64), ``price`` (float64,
        cents exact).
    """
    if n < 0:
        raise ValueError(f"n={n!r} is invalid; expected a number of orders >= 0")
    rng = np.random.default_rng(seed)
    n_customers = max(10, n // 10) if n_customers is None else n_customers
    seconds = np.sort(rng.integers(0, days * 86_400, n))
    product = _zipf_choice(rng, n_products, n, 1.1)
    base_price = np.round(rng.lognormal(3.0, 1.0, n_products), 2)
    return {
        "timestamp": _START + seconds.astype("timedelta64[s]"),
        "country": _zipf_choice(rng, len(COUNTRIES), n, 1.2),
        "customer_id": rng.integers(0, n_customers, n).astype(np.int64),
        "product_id": product,
        "price": np.maximum(base_price[product], 0.01),
    }


def order_record(cols: dict[str, npt.NDArray[Any]], i: int) -> tuple[str, str, int, int, float]:
    """Order ``i`` as the tuple that :func:`parse_order` returns for its line."""
    return (
        str(cols["timestamp"][i]),
        COUNTRIES[int(cols["country"][i])],
        int(cols["customer_id"][i]),
        int(cols["product_id"][i]),
        float(cols["price"][i]),
    )


def format_orders(cols: dict[str, npt.NDArray[Any]], start: int, stop: int) -> list[str]:
    """CSV lines (without newline) of orders ``start .. stop - 1``."""
    stamps = np.datetime_as_string(cols["timestamp"][start:stop], unit="s").tolist()
    countries = [COUNTRIES[c] for c in cols["country"][start:stop].tolist()]
    customers = cols["customer_id"][start:stop].tolist()
    products = cols["product_id"][start:stop].tolist()
    prices = cols["price"][start:stop].tolist()
    return [
        f"{t}, {c}, {u}, {p}, {x:.2f}"
        for t, c, u, p, x in zip(stamps, countries, customers, products, prices, strict=True)
    ]


def write_orders(
    directory: str | os.PathLike[str],
    n: int,
    nfiles: int = 40,
    seed: int = 0,
    **kwargs: Any,
) -> dict[str, npt.NDArray[Any]]:
    """Write ``n`` orders as ``nfiles`` CSV files ``orders-000.csv``, ... in ``directory``.

    Returns the columns (see :func:`generate_orders`; ``kwargs`` are passed on), for
    exact answers. Files hold consecutive orders, so they are in time order too.
    """
    if nfiles < 1:
        raise ValueError(f"nfiles={nfiles!r} is invalid; expected at least 1 file")
    cols = generate_orders(n, seed, **kwargs)
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, n, nfiles + 1).astype(np.int64)
    for i in range(nfiles):
        lines = format_orders(cols, int(bounds[i]), int(bounds[i + 1]))
        with open(os.path.join(directory, f"orders-{i:03d}.csv"), "w") as f:
            f.write("".join(line + "\n" for line in lines))
    return cols


def parse_order(line: str) -> tuple[str, str, int, int, float]:
    """Parse one CSV line into ``(timestamp, country, customer_id, product_id, price)``.

    >>> parse_order("2024-01-01T00:00:05, PL, 17, 3, 9.99\\n")
    ('2024-01-01T00:00:05', 'PL', 17, 3, 9.99)
    """
    stamp, country, customer, product, price = line.split(", ")
    return stamp, country, int(customer), int(product), float(price)
