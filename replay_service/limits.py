"""What one call may ask of a replay server: the bounds both ends know, so a client can
refuse a request the server would refuse, before it is sent."""

MAX_ITEMS_PER_CALL = 65_536
"""The most items one Insert message, one sampling draw or one UpdatePriorities call may
touch. Each is done holding the table's lock, so this bounds how long any single RPC keeps
other writers and samplers waiting (a draw of 65,536 items holds it ~20-35 ms on a 1M-item
prioritized table, an update of as many priorities ~15 ms)."""

MAX_PREFETCH = 64
"""The largest SampleRequest.prefetch: batches drawn at once and sent as one message."""
