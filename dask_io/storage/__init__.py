"""Block stores (npy and HDF5 block files), single ``.npy`` files, HDF5 datasets and
Zarr arrays, read and written by region with exact I/O counters."""

from dask_io.storage.base import IOCounters, Store, Target
from dask_io.storage.blocks import BlockStore
from dask_io.storage.endpoints import TargetSpec, open_source
from dask_io.storage.single import HDF5Chunked, HDF5File, NpyFile
from dask_io.storage.zarr_store import ZarrStore

__all__ = [
    "BlockStore",
    "HDF5Chunked",
    "HDF5File",
    "IOCounters",
    "NpyFile",
    "Store",
    "Target",
    "TargetSpec",
    "ZarrStore",
    "open_source",
]
