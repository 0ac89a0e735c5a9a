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
from shoal.replay_service.client import ReplayClient
from shoal.replay_service.sampling import SampleBatch, Sampler
from shoal.replay_service.server import ReplayServer
from shoal.replay_service.table import (
    CompressedRows,
    Draw,
    InvalidItems,
    RateLimiterTimeout,
    Table,
)
from shoal.replay_service.writer import Writer, WriterError

__all__ = [
    "CompressedRows", "Draw", "FieldSpec", "Fifo", "InvalidItems", "MinSize", "OldestFirst",
    "Prioritized", "Queue", "RateLimiterTimeout", "ReplayClient", "ReplayServer",
    "SampleBatch", "SampleToInsertRatio", "Sampler", "Table", "TableSpec", "Uniform",
    "Writer", "WriterError",
]
