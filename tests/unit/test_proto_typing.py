"""mypy sees protobuf: with the stubs `make proto` generates (mypy-protobuf), a misspelt field fails it."""

from __future__ import annotations

from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api", reason="mypy is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[2]
STUB = ROOT / "ltx" / "v1" / "endpoints_pb2.pyi"

SNIPPET = """
from ltx.v1 import endpoints_pb2 as pb

message = pb.TextToVideoInput(prompt="a cat")
frames: int = message.{field}
"""


@pytest.mark.skipif(not STUB.exists(), reason="no generated protobuf stubs (run `make proto`)")
def test_a_misspelt_proto_field_fails_mypy_and_the_right_one_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # mypy finds the generated `ltx` package from the repository root
    (tmp_path / "none.toml").write_text("[tool.mypy]\n")  # not the project's config: its own file list
    (tmp_path / "misspelt.py").write_text(SNIPPET.format(field="number_of_frame"))
    (tmp_path / "correct.py").write_text(SNIPPET.format(field="number_of_frames"))
    stdout, _stderr, status = mypy_api.run(
        [
            "--no-incremental",
            "--ignore-missing-imports",
            "--config-file",
            str(tmp_path / "none.toml"),
            str(tmp_path / "misspelt.py"),
            str(tmp_path / "correct.py"),
        ]
    )
    assert status == 1, stdout
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, stdout
    assert "misspelt.py:5" in errors[0] and '"number_of_frame"' in errors[0]
