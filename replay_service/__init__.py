"""The data store: tables with selectors and rate limiters, served over gRPC.

    from shoal.replay_service import FieldSpec, MinSize, OldestFirst, Prioritized, Table
"""

from shoal.protos.tables import (
    FieldSpec,
    Fifo,
    MinSize,
    OldestFirst,
    Prioritized,
    Queue,
    SampleToInsertRatio,
    TableSpec,
    Uniform,
)
from shoal.replay_service.client import ReplayClient, SampleBatch, Sampler, Writer, WriterError
from shoal.replay_service.server import ReplayServer
from shoal.replay_service.table import (
    CompressedRows,
    Draw,
    InvalidItems,
    RateLimiterTimeout,
    Table,
)

__all__ = [
    "CompressedRows", "Draw", "FieldSpec", "Fifo", "InvalidItems", "MinSize", "OldestFirst",
    "Prioritized", "Queue", "RateLimiterTimeout", "ReplayClient", "ReplayServer",
    "SampleBatch", "SampleToInsertRatio", "Sampler", "Table", "TableSpec", "Uniform",
    "Writer", "WriterError",
]
