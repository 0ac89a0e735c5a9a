"""Regenerates the committed ``*_pb2*.py`` files from ``protos/*.proto`` (``make protos``).

protoc derives Python imports from the path a .proto is compiled under, so the sources are
compiled from a scratch tree where they sit at ``shoal/protos/``; the generated code then
imports ``shoal.protos.x_pb2`` rather than a bare ``x_pb2`` that would not resolve.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

PROTOS_DIR = Path(__file__).resolve().parent
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_dir: Path) -> list[Path]:
    """Compiles every .proto beside this file into ``out_dir``; returns the files written."""
    with tempfile.TemporaryDirectory() as scratch:
        package_dir = Path(scratch) / "shoal" / "protos"
        package_dir.mkdir(parents=True)
        sources = sorted(PROTOS_DIR.glob("*.proto"))
        for source in sources:
            shutil.copy(source, package_dir / source.name)
        args = [
            "protoc",
            f"-I{scratch}",
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            *(f"shoal/protos/{source.name}" for source in sources),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for produced in sorted(package_dir.iterdir()):
            if produced.name.endswith(GENERATED_SUFFIXES):
                target = out_dir / produced.name
                shutil.copy(produced, target)
                written.append(target)
        return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=PROTOS_DIR)
    for path in generate(parser.parse_args().out):
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
