"""Property-based fuzzing of a real replay server's parsers (see ``fuzz_messages.py``):
a fixed-seed budget here, minutes of it in ``benchmarks/fuzz_replay.py``."""

import pytest

from .fuzz_messages import RSS_BOUND_BYTES, fuzz_server, run_fuzz

EXAMPLES = 600


@pytest.mark.timeout(170)
def test_random_and_mutated_messages_get_allowed_statuses_and_change_nothing(tmp_path):
    with fuzz_server(tmp_path) as harness:
        run_fuzz(harness, examples=EXAMPLES, seed=0)
        harness.still_serves()
        report = harness.report
    assert report.messages >= EXAMPLES
    # The fuzzer reached past the first checks: some messages were stored or served.
    assert report.statuses["OK"] > 0 and report.statuses["INVALID_ARGUMENT"] > 0
    assert report.peak_rss_bytes - report.warm_rss_bytes <= RSS_BOUND_BYTES
