# Included by _hotpath_c.pyx (one compiled module, split by kernel); the names it uses
# are imported there. The contract is the twin in _hotpath_py.py.

# Latency windows: same bins and ring as the twin, in C arrays (bench_fast: latency).

cdef enum:
    LW_SUB = 16
    LW_EMIN = -3
    LW_EMAX = 25
    LW_BINS = (LW_EMAX - LW_EMIN) * LW_SUB + 2


cdef inline int _lat_bin(double value) noexcept nogil:
    cdef int e
    cdef double m
    if not value > 0.0:
        return 0
    m = frexp(value, &e)
    if e < LW_EMIN:
        return 0
    if e >= LW_EMAX:
        return LW_BINS - 1
    return (e - LW_EMIN) * LW_SUB + <int>((m - 0.5) * (2 * LW_SUB)) + 1


cdef inline double _lat_value(int b) noexcept nogil:
    cdef int e, s
    if b <= 0:
        return ldexp(0.5, LW_EMIN)
    if b >= LW_BINS - 1:
        return ldexp(0.5, LW_EMAX)
    e = (b - 1) // LW_SUB
    s = (b - 1) % LW_SUB
    return ldexp(0.5 + (s + 0.5) / (2 * LW_SUB), e + LW_EMIN)


def latency_bin(double value):
    return _lat_bin(value)


def latency_bin_value(int b):
    return _lat_value(b)


cdef class LatencyWindow:
    cdef readonly double window_s
    cdef readonly int slices
    cdef double _slice_s
    cdef unsigned int* _hist
    cdef long long* _ok
    cdef long long* _err
    cdef long long _total[LW_BINS]
    cdef long long _n_ok, _n_err
    cdef long long _head
    cdef bint _started

    def __cinit__(self, double window_s=60.0, int slices=12):
        if not window_s > 0 or slices < 1:
            raise ValueError("window_s must be > 0 and slices >= 1")
        self.window_s = window_s
        self.slices = slices
        self._slice_s = window_s / slices
        self._hist = <unsigned int*>PyMem_Calloc(<size_t>slices * LW_BINS, sizeof(unsigned int))
        self._ok = <long long*>PyMem_Calloc(slices, sizeof(long long))
        self._err = <long long*>PyMem_Calloc(slices, sizeof(long long))
        if self._hist == NULL or self._ok == NULL or self._err == NULL:
            raise MemoryError()
        memset(self._total, 0, sizeof(self._total))
        self._started = False

    def __dealloc__(self):
        PyMem_Free(self._hist)
        PyMem_Free(self._ok)
        PyMem_Free(self._err)

    cdef inline int _advance(self, double now) noexcept:
        cdef long long sid = <long long>floor(now / self._slice_s)
        cdef long long steps, k, idx
        if not self._started:
            self._started = True
            self._head = sid
            return <int>_pymod(sid, self.slices)
        if sid <= self._head:
            return <int>_pymod(self._head, self.slices)
        steps = sid - self._head
        if steps > self.slices:
            steps = self.slices
        for k in range(1, steps + 1):
            self._expire(<int>_pymod(self._head + k, self.slices))
        self._head = sid
        return <int>_pymod(sid, self.slices)

    cdef inline void _expire(self, int idx) noexcept:
        cdef unsigned int* h = self._hist + <Py_ssize_t>idx * LW_BINS
        cdef int b
        for b in range(LW_BINS):
            if h[b]:
                self._total[b] -= h[b]
                h[b] = 0
        self._n_ok -= self._ok[idx]
        self._n_err -= self._err[idx]
        self._ok[idx] = 0
        self._err[idx] = 0

    cpdef void observe(self, double latency_ms, bint ok, double now):
        cdef int idx = self._advance(now)
        cdef int b = _lat_bin(latency_ms)
        self._hist[<Py_ssize_t>idx * LW_BINS + b] += 1
        self._total[b] += 1
        if ok:
            self._ok[idx] += 1
            self._n_ok += 1
        else:
            self._err[idx] += 1
            self._n_err += 1

    def count(self, double now):
        self._advance(now)
        return self._n_ok + self._n_err

    def error_rate(self, double now):
        self._advance(now)
        cdef long long n = self._n_ok + self._n_err
        return self._n_err / <double>n if n else None

    cpdef object quantile(self, double q, double now):
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile {q!r} is not in [0, 1]")
        self._advance(now)
        cdef long long n = self._n_ok + self._n_err
        cdef long long rank, acc = 0
        cdef int b
        if not n:
            return None
        rank = <long long>ceil(q * n)
        if rank < 1:
            rank = 1
        for b in range(LW_BINS):
            acc += self._total[b]
            if acc >= rank:
                return _lat_value(b)
        return _lat_value(LW_BINS - 1)

    def p50(self, double now):
        return self.quantile(0.50, now)

    def p95(self, double now):
        return self.quantile(0.95, now)

    def p99(self, double now):
        return self.quantile(0.99, now)


cdef inline long long _pymod(long long a, long long m) noexcept nogil:
    cdef long long r = a % m
    return r + m if r < 0 else r
