"""One module per source format. Each exposes ``load(input_path, **options) -> RawDataset``.

Importers only parse; :func:`mgoe.data.prepare.prepare_dataset` does the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

# source name -> module under mgoe.data.importers
SOURCES: dict[str, str] = {
    "tmall": "tmall",
    "beibei": "beibei",
    "movielens100k": "movielens100k",
    "kuairand": "kuairand",
    "aliccp": "aliccp",
    "aliexpress": "aliexpress",
    "byterec": "byterec",
    "taobao-userbehavior": "taobao_userbehavior",
    "census-income": "census_income",
    "adult": "adult",
    "table": "table",
    "tenrec": "tenrec",
}


def get_importer(source: str) -> Callable[..., RawDataset]:
    if source not in SOURCES:
        raise MgoeError(f"unknown source {source!r}; known sources: {', '.join(sorted(SOURCES))}")
    module = importlib.import_module(f"mgoe.data.importers.{SOURCES[source]}")
    return module.load
