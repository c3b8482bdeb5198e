# Included by _hotpath_c.pyx (one compiled module, split by kernel); the names it uses
# are imported there. The contract is the twin in _hotpath_py.py.

# Weighted selection: cumulative sums in a C array, binary search (bench_fast: pick).

cdef class _Weights:
    cdef double* cum
    cdef double* ws
    cdef Py_ssize_t n
    cdef double total
    cdef Py_ssize_t last
    cdef tuple wtuple

    def __dealloc__(self):
        PyMem_Free(self.cum)
        PyMem_Free(self.ws)


cdef _Weights _build_weights(weights):
    cdef list wl = [float(w) for w in weights]
    cdef _Weights st = _Weights.__new__(_Weights)
    cdef Py_ssize_t i, n = len(wl)
    cdef double w, total = 0.0
    st.n = n
    st.last = -1
    st.cum = <double*>PyMem_Malloc((n + 1) * sizeof(double))
    st.ws = <double*>PyMem_Malloc((n + 1) * sizeof(double))
    if st.cum == NULL or st.ws == NULL:
        raise MemoryError()
    for i in range(n):
        w = wl[i]
        if not (0.0 <= w < INFINITY):
            raise ValueError(f"weight {i} is {w!r}: weights must be finite and >= 0")
        total += w
        st.cum[i] = total
        st.ws[i] = w
        if w > 0.0:
            st.last = i
    st.total = total
    st.wtuple = tuple(wl)
    return st


@cython.final
cdef class WeightedPicker:
    cdef _Weights _state

    def __init__(self, weights):
        self._state = _build_weights(weights)

    def replace(self, weights):
        self._state = _build_weights(weights)

    @property
    def weights(self):
        return self._state.wtuple

    @property
    def total(self):
        return self._state.total

    def __len__(self):
        return self._state.n

    @cython.always_allow_keywords(False)
    def pick(self, object u):
        # METH_O entry point: the call overhead is most of a pick (bench_fast: pick)
        cdef _Weights st = self._state
        cdef double target
        cdef Py_ssize_t lo = 0, hi, mid
        if st.last < 0:
            return -1
        target = <double>u * st.total
        hi = st.n
        while lo < hi:  # bisect_right: first index with cum > target
            mid = (lo + hi) >> 1
            if target < st.cum[mid]:
                hi = mid
            else:
                lo = mid + 1
        return lo if lo <= st.last else st.last

    def pick_excluding(self, double u, excluded):
        cdef _Weights st = self._state
        cdef double remaining = 0.0, target, acc = 0.0, w
        cdef Py_ssize_t i, chosen = -1
        cdef object ex = excluded
        for i in range(st.n):
            if i not in ex:
                remaining += st.ws[i]
        if remaining <= 0.0:
            return -1
        target = u * remaining
        for i in range(st.n):
            w = st.ws[i]
            if w > 0.0 and i not in ex:
                acc += w
                chosen = i
                if acc > target:
                    return i
        return chosen

    def choose(self, rng):
        return self.pick(rng.random())
