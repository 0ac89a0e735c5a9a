"""Fuzz a real replay server for minutes: random and mutated Insert / Sample /
UpdatePriorities / Info messages (``tests/replay_service/fuzz_messages.py``, the same
generators and checks ``make test`` runs for a fixed-seed budget).

    python benchmarks/fuzz_replay.py --minutes 10 [--seed 0] [--json]

Runs rounds of --examples messages, seed after seed, until the time is up; the first
message that breaks a property (a status other than OK / INVALID_ARGUMENT / NOT_FOUND /
RESOURCE_EXHAUSTED / UNAUTHENTICATED, a refused message that changed a table, the server's
RSS more than the bound above its warm level) fails the run with the shrunk message, exit 1.
Prints messages tried, statuses seen, message kinds and peak RSS; with --json the last line
is {"messages", "statuses", "kinds", "warm_rss_mib", "peak_rss_mib", "last_rss_mib",
"rss_bound_mib", "seconds", "ok"}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

# The generators live with the tests; loaded by path, as the tests are not a package.
_FUZZ = Path(__file__).resolve().parents[1] / "tests" / "replay_service" / "fuzz_messages.py"
_spec = importlib.util.spec_from_file_location("fuzz_messages", _FUZZ)
assert _spec is not None and _spec.loader is not None
fuzz_messages = sys.modules["fuzz_messages"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_messages)
RSS_BOUND_BYTES, fuzz_server, run_fuzz = (
    fuzz_messages.RSS_BOUND_BYTES, fuzz_messages.fuzz_server, fuzz_messages.run_fuzz)

MIB = 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first round")
    parser.add_argument("--examples", type=int, default=500, help="messages per round")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    ok = True
    with tempfile.TemporaryDirectory() as workdir, fuzz_server(Path(workdir)) as harness:
        end = time.monotonic() + args.minutes * 60
        seed = args.seed
        try:
            while time.monotonic() < end:
                run_fuzz(harness, examples=args.examples, seed=seed)
                seed += 1
            harness.still_serves()
        except AssertionError as failure:
            ok = False
            print(f"FAILED at seed {seed}: {failure}", file=sys.stderr)
        report = harness.report

    print(f"messages tried   {report.messages:,} in {report.elapsed_seconds:.0f} s "
          f"({report.messages / max(report.elapsed_seconds, 1e-9):.0f}/s), seeds "
          f"{args.seed}..{seed - 1}")
    print("statuses         " + ", ".join(f"{name} {count:,}"
                                          for name, count in report.statuses.most_common()))
    print("message kinds    " + ", ".join(f"{name} {count:,}"
                                          for name, count in report.kinds.most_common()))
    rise = (report.peak_rss_bytes - report.warm_rss_bytes) / MIB
    print(f"server RSS       warm {report.warm_rss_bytes / MIB:.1f} MiB, peak "
          f"{report.peak_rss_bytes / MIB:.1f} MiB (+{rise:.1f}; "
          f"bound +{RSS_BOUND_BYTES / MIB:.0f}), at the end {report.last_rss_bytes / MIB:.1f} MiB")
    print("verdict          " + ("ok" if ok else "FAILED"))
    if args.json:
        print(json.dumps({
            "messages": report.messages, "statuses": dict(report.statuses),
            "kinds": dict(report.kinds), "warm_rss_mib": round(report.warm_rss_bytes / MIB, 1),
            "peak_rss_mib": round(report.peak_rss_bytes / MIB, 1),
            "last_rss_mib": round(report.last_rss_bytes / MIB, 1),
            "rss_bound_mib": RSS_BOUND_BYTES / MIB, "seconds": round(report.elapsed_seconds, 1),
            "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
