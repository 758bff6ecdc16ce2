"""vectorload: keep vector collections resident in memory on a pool of hnswlib querynodes."""

__version__ = "0.1.0"
