"""Data layer: the prepared-dataset format, importers, splits, negatives, the generator."""

from mgoe.data.prepare import PrepareOptions, RawDataset, prepare_dataset
from mgoe.data.schema import Dataset, DatasetMeta

__all__ = ["Dataset", "DatasetMeta", "PrepareOptions", "RawDataset", "prepare_dataset"]
