"""The data store: tables with selectors and rate limiters, served over gRPC.

    from shoal.replay_service import FieldSpec, MinSize, OldestFirst, Prioritized, Table
"""

from shoal.replay_service.client import ReplayClient, SampleBatch, Sampler, Writer, WriterError
from shoal.replay_service.rate_limiters import MinSize, Queue, SampleToInsertRatio
from shoal.replay_service.selectors import Fifo, Prioritized, Uniform
from shoal.replay_service.server import ReplayServer
from shoal.replay_service.table import (
    CompressedRows,
    FieldSpec,
    InvalidItems,
    OldestFirst,
    RateLimiterTimeout,
    SampledBatch,
    Table,
)

__all__ = [
    "CompressedRows", "FieldSpec", "Fifo", "InvalidItems", "MinSize", "OldestFirst",
    "Prioritized", "Queue", "RateLimiterTimeout", "ReplayClient", "ReplayServer",
    "SampleBatch", "SampleToInsertRatio", "SampledBatch", "Sampler", "Table", "Uniform",
    "Writer", "WriterError",
]
