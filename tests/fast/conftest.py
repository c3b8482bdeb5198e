import importlib

import pytest


def _kernel_params():
    yield pytest.param("py", id="py")
    try:
        importlib.import_module("proxy._fast._hotpath_c")
    except ImportError:
        yield pytest.param("c", id="c", marks=pytest.mark.skip(
            reason="proxy._fast._hotpath_c is not built (python setup.py build_ext --inplace)"))
    else:
        yield pytest.param("c", id="c")


@pytest.fixture(params=list(_kernel_params()))
def kernels(request):
    """One implementation of the hot path per test run: the twin and the compiled one."""
    return importlib.import_module(f"proxy._fast._hotpath_{request.param}")


@pytest.fixture(scope="session")
def both():
    """(reference, compiled) for parity tests; skips when the extension is not built."""
    py = importlib.import_module("proxy._fast._hotpath_py")
    try:
        c = importlib.import_module("proxy._fast._hotpath_c")
    except ImportError:
        pytest.skip("proxy._fast._hotpath_c is not built")
    return py, c
