"""nw2 pipeline: ingest recordings into a Parquet window store, measure, balance."""

__version__ = "0.1.0"
