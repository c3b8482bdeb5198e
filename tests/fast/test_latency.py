"""Rolling latency windows, on both implementations."""
import pytest


def test_empty(kernels):
    w = kernels.LatencyWindow()
    assert w.count(0.0) == 0 and w.p50(0.0) is None and w.error_rate(0.0) is None


def test_quantiles_within_bin_error(kernels):
    w = kernels.LatencyWindow(60.0)
    for i in range(1, 1001):
        w.observe(float(i), True, 100.0)
    for q, exact in [(0.5, 500), (0.95, 950), (0.99, 990)]:
        assert w.quantile(q, 100.0) == pytest.approx(exact, rel=0.035)
    assert w.p50(100.0) == w.quantile(0.5, 100.0)
    assert w.p95(100.0) < w.p99(100.0)


def test_error_rate_and_count(kernels):
    w = kernels.LatencyWindow(10.0, slices=10)
    for i in range(10):
        w.observe(50.0, i % 4 != 0, 1.0)
    assert w.count(1.0) == 10
    assert w.error_rate(1.0) == pytest.approx(0.3)


def test_old_samples_expire(kernels):
    w = kernels.LatencyWindow(10.0, slices=10)
    w.observe(1000.0, False, 0.5)
    w.observe(10.0, True, 5.5)
    assert w.count(9.9) == 2
    assert w.count(10.5) == 1          # the slice holding t=0.5 has left the window
    assert w.error_rate(10.5) == 0.0
    assert w.p99(10.5) == pytest.approx(10.0, rel=0.035)
    assert w.count(1e6) == 0           # a long gap clears everything
    assert w.p50(1e6) is None


def test_clock_going_backwards_counts_in_newest_slice(kernels):
    w = kernels.LatencyWindow(10.0, slices=10)
    w.observe(1.0, True, 100.0)
    w.observe(2.0, True, 50.0)
    assert w.count(100.0) == 2


def test_range_ends(kernels):
    w = kernels.LatencyWindow()
    w.observe(0.0, True, 0.0)
    w.observe(1e12, True, 0.0)
    assert w.quantile(0.0, 0.0) == 2 ** -4
    assert w.quantile(1.0, 0.0) == 2 ** 24
    with pytest.raises(ValueError):
        w.quantile(1.5, 0.0)
    with pytest.raises(ValueError):
        kernels.LatencyWindow(0.0)
