"""Generate the Python gRPC stubs from the vendored .proto files.

Why a script: the stubs are committed (so the package installs without
grpcio-tools), but they must never be hand-edited.  ``--check`` regenerates
into a temporary directory and fails when the committed files differ; the
test suite runs it so stale stubs cannot land.
"""
from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = (
    "gpu_plugin/deviceplugin/_api/api.proto",
    "gpu_plugin/levelzero/_api/levelzero.proto",
    "gpu_plugin/rm/_api/api.proto",
    "gpu_plugin/xpumd/_api/deviceinfo.proto",
    "gpu_plugin/dra/_api/dra_v1.proto",
    "gpu_plugin/dra/_api/dra_v1beta1.proto",
    "gpu_plugin/dra/_api/pluginregistration.proto",
    "gpu_plugin/dra/_api/dra_health.proto",
)


def _generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # imported late: only needed by this script

    generated: list[Path] = []
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(ROOT / proto),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"gen_protos: protoc failed for {proto}")
        stem = Path(proto).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            generated.append(Path(f"{stem}{suffix}"))
    return generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed stubs differ from freshly generated ones")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        files = _generate(out)
        stale = [f for f in files
                 if not (ROOT / f).exists() or not filecmp.cmp(out / f, ROOT / f, shallow=False)]
        if args.check:
            for f in stale:
                print(f"stale generated stub: {f} (run python scripts/gen_protos.py)", file=sys.stderr)
            return 1 if stale else 0
        for f in files:
            shutil.copyfile(out / f, ROOT / f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
