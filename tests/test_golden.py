"""Golden tests: every tests/golden/<pass>/*.mlir file runs its RUN pipeline and its CHECK lines
must match the output (sparsec.testing.filecheck)."""
import glob
import os

import pytest

from sparsec.passes import PASSES
from sparsec.testing.filecheck import Check, FileCheckError, filecheck, run_golden

HERE = os.path.join(os.path.dirname(__file__), "golden")
FILES = sorted(glob.glob(os.path.join(HERE, "*", "*.mlir")))


@pytest.mark.parametrize("path", FILES, ids=[os.path.relpath(p, HERE) for p in FILES])
def test_golden(path):
    run_golden(path)


def test_every_pass_has_golden_files():
    missing = [p for p in PASSES if not glob.glob(os.path.join(HERE, p, "*.mlir"))]
    assert not missing, f"passes without golden tests in tests/golden/<pass>/: {missing}"


def _checks(*pairs):
    return [Check(k, p, i) for i, (k, p) in enumerate(pairs, 1)]


def test_filecheck_can_fail():
    out = "a\nb\nc\n"
    filecheck(out, _checks(("CHECK", "a"), ("CHECK-NEXT", "b"), ("CHECK-NOT", "a"), ("CHECK", "c")))
    for bad in [_checks(("CHECK", "z")), _checks(("CHECK", "a"), ("CHECK-NEXT", "c")),
                _checks(("CHECK-NOT", "b"), ("CHECK", "c")), _checks(("CHECK", "c"), ("CHECK", "a")),
                _checks(("CHECK", "b"), ("CHECK-NOT", "c")), _checks(("CHECK-COUNT-2", "b"))]:
        with pytest.raises(FileCheckError):
            filecheck(out, bad)
    filecheck("x = f(%3)\n", _checks(("CHECK", "f(%{{[0-9]+}})")))
