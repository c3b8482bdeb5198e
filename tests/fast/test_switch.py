"""Which implementation `proxy._fast` uses, and that the switch works."""
import os
import subprocess
import sys

import pytest

import proxy._fast as fast

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _implementation(env_extra):
    env = dict(os.environ)
    env.pop("FAREGATE_NO_EXTENSIONS", None)
    env.update(env_extra)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", "import proxy._fast as f; print(f.IMPLEMENTATION)"],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return out.stdout.strip()


def test_no_extensions_forces_the_twin(monkeypatch):
    monkeypatch.setenv("FAREGATE_NO_EXTENSIONS", "1")
    assert _implementation({"FAREGATE_NO_EXTENSIONS": "1"}) == "py"


def test_default_uses_the_extension_when_built():
    try:
        import proxy._fast._hotpath_c  # noqa: F401
    except ImportError:
        pytest.skip("extension not built")
    assert _implementation({}) == "c"


@pytest.mark.skipif(os.environ.get("FAREGATE_REQUIRE_EXTENSIONS") != "1",
                    reason="set FAREGATE_REQUIRE_EXTENSIONS=1 in the accelerated CI job")
def test_extension_actually_loads():
    assert fast.IMPLEMENTATION == "c"


def test_all_lists_the_public_names():
    public = {n for n in vars(fast) if not n.startswith("_") and n not in {"os", "sys"}}
    assert set(fast.__all__) == public
    for name in fast.__all__:
        assert getattr(fast, name) is not None


def test_twins_export_the_same_names():
    from proxy._fast import _hotpath_py
    try:
        from proxy._fast import _hotpath_c
    except ImportError:
        pytest.skip("extension not built")
    assert sorted(_hotpath_c.__all__) == sorted(_hotpath_py.__all__)
    for name in _hotpath_py.__all__:
        assert hasattr(_hotpath_c, name), name
