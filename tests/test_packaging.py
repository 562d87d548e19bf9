"""Packaging: the package list is complete, passes/ and runtime/ install under sparsec, CLI entry points."""
import os
import subprocess
import sys
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _declared():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        tool = tomllib.load(f)["tool"]["setuptools"]
    return tool["packages"], tool["package-dir"]


def test_every_package_directory_is_listed():
    packages, mapping = _declared()
    found = set()
    for top, pkg in (("sparsec", "sparsec"), ("passes", "sparsec.passes"), ("runtime", "sparsec.runtime")):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files and "__pycache__" not in d:
                rel = os.path.relpath(d, os.path.join(ROOT, top))
                found.add(pkg if rel == "." else pkg + "." + rel.replace(os.sep, "."))
    # sparsec.passes/runtime subpackages live under passes/ and runtime/, not sparsec/
    found = {p for p in found if not p.startswith(("sparsec.passes.", "sparsec.runtime.")) or
             p.split(".")[1] in ("passes", "runtime")}
    assert found - set(packages) == set(), f"packages missing from pyproject.toml: {sorted(found - set(packages))}"
    assert mapping["sparsec.passes"] == "passes" and mapping["sparsec.runtime"] == "runtime"


def test_passes_and_runtime_import_as_sparsec_subpackages():
    import sparsec.passes
    import sparsec.runtime
    assert os.path.samefile(os.path.dirname(sparsec.passes.__file__), os.path.join(ROOT, "passes"))
    assert os.path.samefile(os.path.dirname(sparsec.runtime.__file__), os.path.join(ROOT, "runtime"))


def test_python_dash_m_and_console_script():
    out = subprocess.run([sys.executable, "-m", "sparsec", "--help"], capture_output=True, text=True, check=True)
    assert "Usage: sparsec" in out.stdout and "show" in out.stdout


def test_wheel_installs_passes_and_runtime_under_sparsec(tmp_path):
    """``pip install .`` installs the wheel built here: passes/ and runtime/ must be inside it
    as sparsec/passes and sparsec/runtime, and nothing generic at the top level."""
    import zipfile
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), ROOT],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{r.stderr[-3000:]}")
    (wheel,) = list(tmp_path.glob("sparsec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "sparsec/passes/__init__.py" in names and "sparsec/runtime/__init__.py" in names
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"sparsec", next(t for t in tops if t.endswith(".dist-info"))}, tops
