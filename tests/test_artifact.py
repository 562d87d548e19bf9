"""The .spc artifact: round trip, and clear refusals of corrupted, truncated, foreign or
version-mismatched files."""
import ml_dtypes
import numpy as np
import pytest
from click.testing import CliRunner

import sparsec as sc
from sparsec.cli import main
from sparsec.runtime.artifact import ArtifactError, load_artifact, save_artifact


def _save(tmp_path, name="m.spc"):
    p = str(tmp_path / name)
    w = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(5, ml_dtypes.bfloat16),
         "ids": np.arange(3, dtype=np.int64)}
    save_artifact(p, "IR TEXT", w, {"target": "cpu", "pipeline": "cse"})
    return p, w


def test_round_trip_keeps_weights_ir_and_manifest(tmp_path):
    p, w = _save(tmp_path)
    ir, w2, man = load_artifact(p)
    assert ir == "IR TEXT" and man["pipeline"] == "cse" and man["raw_dtypes"] == {"b": "bfloat16"}
    for k in w:
        assert w2[k].dtype == w[k].dtype and np.array_equal(w2[k].astype(np.float64), w[k].astype(np.float64))


def test_flipped_byte_fails_the_checksum(tmp_path):
    p, _ = _save(tmp_path)
    data = bytearray(open(p, "rb").read())
    data[-3] ^= 0x40  # inside the last tensor's bytes
    open(p, "wb").write(bytes(data))
    with pytest.raises(ArtifactError, match="checksum mismatch"):
        load_artifact(p)


def test_truncated_file_is_refused(tmp_path):
    p, _ = _save(tmp_path)
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupted or truncated"):
        load_artifact(p)


def test_version_mismatch_and_foreign_files_are_refused(tmp_path):
    from safetensors.numpy import save_file
    p = str(tmp_path / "old.spc")
    save_file({"x": np.zeros(2, np.float32)}, p, metadata={"format": "sparsec.spc", "format_version": "0"})
    with pytest.raises(ArtifactError, match="format version '0'.*recompile"):
        load_artifact(p)
    save_file({"x": np.zeros(2, np.float32)}, p, metadata={"format": "other"})
    with pytest.raises(ArtifactError, match="not a sparsec artifact"):
        load_artifact(p)
    with pytest.raises(ArtifactError, match="no such file"):
        load_artifact(str(tmp_path / "missing.spc"))


def test_cli_refuses_a_corrupted_artifact_cleanly(tmp_path):
    p, _ = _save(tmp_path)
    data = bytearray(open(p, "rb").read())
    data[-1] ^= 1
    open(p, "wb").write(bytes(data))
    r = CliRunner().invoke(main, ["run", p])
    assert r.exit_code == 1 and "checksum mismatch" in r.output and "Traceback" not in r.output
    with pytest.raises(sc.SparsecError, match="checksum"):
        sc.load(p)


def test_failed_save_leaves_no_file(tmp_path):
    p = str(tmp_path / "x.spc")
    with pytest.raises(ArtifactError):
        save_artifact(p, "ir", {"bad": np.array(["a"], dtype=object)}, {})
    assert not (tmp_path / "x.spc").exists() and not list(tmp_path.iterdir())
