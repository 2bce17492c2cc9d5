"""The committed gRPC stubs must be exactly what grpcio-tools generates from the vendored protos."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_committed_stubs_are_fresh() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_check_detects_a_stale_stub(tmp_path: Path, monkeypatch) -> None:
    """--check must be able to fail: corrupt a stub copy and point the script at it."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_protos
    finally:
        sys.path.pop(0)
    stub = ROOT / "gpu_plugin" / "deviceplugin" / "_api" / "api_pb2.py"
    original = stub.read_bytes()
    fake_root = tmp_path / "root"
    for proto in gen_protos.PROTOS:
        src = ROOT / proto
        for f in src.parent.iterdir():
            if f.is_file():
                dst = fake_root / f.relative_to(ROOT)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(f.read_bytes())
    (fake_root / stub.relative_to(ROOT)).write_bytes(original + b"# edited by hand\n")
    monkeypatch.setattr(gen_protos, "ROOT", fake_root)
    assert gen_protos.main(["--check"]) == 1
