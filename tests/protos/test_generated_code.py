"""The committed *_pb2*.py files must be what `make protos` produces from the .proto files."""

from pathlib import Path

from shoal.protos import generate


def test_generated_code_is_up_to_date(tmp_path):
    fresh = generate.generate(tmp_path)
    assert {p.name for p in fresh} == {
        f"{name}{suffix}" for name in ("replay", "parameters", "control")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")}
    stale = [p.name for p in fresh
             if p.read_bytes() != (generate.PROTOS_DIR / p.name).read_bytes()]
    assert not stale, f"{stale} are stale: run `make protos` and commit the result"


def test_generated_modules_import_from_the_shoal_package():
    text = Path(generate.PROTOS_DIR / "replay_pb2_grpc.py").read_text()
    assert "from shoal.protos import replay_pb2" in text
