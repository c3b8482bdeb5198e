# Included by _hotpath_c.pyx (one compiled module, split by kernel); the names it uses
# are imported there. The contract is the twin in _hotpath_py.py.

# Token estimation: a port of _hotpath_py._pieces / _piece_cost, one pass over the code
# points with no Python objects (bench_fast: count_text_tokens).


cdef enum:
    K_LOWER = 0
    K_UPPER = 1
    K_DIGIT = 2
    K_SPACE = 3
    K_WS = 4
    K_NL = 5
    K_PUNCT = 6
    K_LETTER = 7
    K_SYM = 8
    N_GROUPS = 9
    G_LATX = 1
    WORD_LEN = 25
    PUNCT_LEN = 17
    SYM_LEN = 33
    NL_LEN = 17
    RUN_LEN = 65
    WS_SHORT = 16
    WS_LEN = 17


ctypedef fused uchar_t:
    unsigned char       # PyUnicode_1BYTE_KIND
    unsigned short      # PyUnicode_2BYTE_KIND
    unsigned int        # PyUnicode_4BYTE_KIND

cdef unsigned char ASCII_KIND[128]
cdef long long T_WORD[N_GROUPS][3][WORD_LEN]
cdef long long T_WORD_SLOPE[N_GROUPS]
cdef long long T_PUNCT[2][PUNCT_LEN]
cdef long long T_SYM[2][SYM_LEN]
cdef long long T_NL[2][NL_LEN]
cdef long long T_WS[2][WS_LEN]
cdef long long T_RUN[4][RUN_LEN]
cdef long long T_RUN_SLOPE[4]
cdef long long T_PUNCT_SLOPE, T_SYM_SLOPE


cdef void _load_tables() except *:
    global T_PUNCT_SLOPE, T_SYM_SLOPE
    cdef int g, p, n
    for n in range(128):
        ASCII_KIND[n] = _py._ASCII_KIND[n]
    assert len(_T.WORD) == N_GROUPS and len(_T.WORD[0][0]) == WORD_LEN
    assert len(_T.PUNCT[0]) == PUNCT_LEN and len(_T.SYM[0]) == SYM_LEN
    assert len(_T.NL[0]) == NL_LEN and len(_T.WS[0]) == WS_LEN
    for g in range(N_GROUPS):
        T_WORD_SLOPE[g] = _T.WORD_SLOPE[g]
        for p in range(3):
            for n in range(WORD_LEN):
                T_WORD[g][p][n] = _T.WORD[g][p][n]
    for p in range(2):
        for n in range(PUNCT_LEN):
            T_PUNCT[p][n] = _T.PUNCT[p][n]
        for n in range(SYM_LEN):
            T_SYM[p][n] = _T.SYM[p][n]
    for p in range(2):
        for n in range(NL_LEN):
            T_NL[p][n] = _T.NL[p][n]
        for n in range(WS_LEN):
            T_WS[p][n] = _T.WS[p][n]
    T_PUNCT_SLOPE = _T.PUNCT_SLOPE
    T_SYM_SLOPE = _T.SYM_SLOPE
    assert len(_T.RUN[0]) == RUN_LEN and NL_LEN == WS_LEN == _py.WS_SHORT + 1
    for p in range(4):
        T_RUN_SLOPE[p] = _T.RUN_SLOPE[p]
        for n in range(RUN_LEN):
            T_RUN[p][n] = _T.RUN[p][n]


_load_tables()


cdef inline int _script(Py_UCS4 o) noexcept nogil:
    if o < 0x370 or 0x1E00 <= o < 0x1F00 or 0x2C60 <= o < 0x2C80 or 0xA720 <= o < 0xA800:
        return 1
    if o < 0x590 or 0x10A0 <= o < 0x1100 or 0x1F00 <= o < 0x2000:
        return 2
    if o < 0x900:
        return 3
    if o < 0x1100 or 0x1780 <= o < 0x1800:
        return 4
    if o < 0x1200 or 0x3130 <= o < 0x3190 or 0xAC00 <= o < 0xD7B0:
        return 7
    if 0x3040 <= o < 0x3100 or 0x31F0 <= o < 0x3200 or 0xFF66 <= o < 0xFFA0:
        return 6
    if 0x2E80 <= o < 0x3000 or 0x3400 <= o < 0xA000 or 0xF900 <= o < 0xFB00 or o >= 0x20000:
        return 5
    return 8


cdef inline bint _is_mark(Py_UCS4 o) noexcept nogil:
    return (0x300 <= o < 0x370 or 0x483 <= o < 0x48A or 0x591 <= o < 0x5C8
            or 0x610 <= o < 0x61B or 0x64B <= o < 0x660 or o == 0x670 or 0x6D6 <= o < 0x6EE
            or 0x900 <= o < 0xE00 or 0xE31 <= o < 0xE3B or 0xE47 <= o < 0xE4F
            or 0x1AB0 <= o < 0x1B00 or 0x1DC0 <= o < 0x1E00 or 0x20D0 <= o < 0x2100
            or 0x3099 <= o < 0x309B or 0xFE20 <= o < 0xFE30)


cdef inline int _kind_full(Py_UCS4 ch, int* group, bint* up):
    cdef int k
    if ch < 128:
        k = ASCII_KIND[ch]
        group[0] = 0
        up[0] = k == K_UPPER
        return k
    group[0] = 0
    up[0] = False
    if ch.isspace():
        return K_WS
    if ch.isalpha() or _is_mark(ch):
        group[0] = _script(ch)
        up[0] = ch.isupper()
        return K_LETTER
    if ch.isnumeric():
        return K_DIGIT
    return K_SYM


cdef inline int _kind1(Py_UCS4 ch):
    cdef int g
    cdef bint up
    if ch < 128:
        return ASCII_KIND[ch]
    return _kind_full(ch, &g, &up)


cdef inline bint _is_letter(int k) noexcept nogil:
    return k == K_LOWER or k == K_UPPER or k == K_LETTER


cdef inline long long _run(const long long* table, Py_ssize_t size, long long slope,
                           Py_ssize_t n) noexcept nogil:
    if n < size:
        return table[n]
    return table[size - 1] + (n - (size - 1)) * slope


cdef inline int _utf8_len(Py_UCS4 o) noexcept nogil:
    return 1 if o < 0x80 else 2 if o < 0x800 else 3 if o < 0x10000 else 4


cdef inline int _ws_group(const uchar_t* data, Py_ssize_t start, Py_ssize_t end,
                          unsigned int plain) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(start, end):
        if data[k] != plain:
            return 1
    return 0


cdef inline int _ws_type(unsigned int ch) noexcept nogil:
    return 0 if ch == 32 else 1 if ch == 9 else 2 if ch == 10 or ch == 13 else 3


cdef inline long long _ws_cost(const uchar_t* data, Py_ssize_t start, Py_ssize_t end,
                               unsigned int plain, const long long* short_table) noexcept nogil:
    """Twin of _hotpath_py._piece_cost / _long_ws_cost for a whitespace piece."""
    cdef Py_ssize_t n = end - start, k, m
    cdef long long total = 0
    cdef int t
    if n <= WS_SHORT:
        return short_table[_ws_group(data, start, end, plain) * (WS_SHORT + 1) + n]
    k = start
    while k < end:
        t = _ws_type(data[k])
        m = k + 1
        while m < end and _ws_type(data[m]) == t:
            m += 1
        total += _run(&T_RUN[t][0], RUN_LEN, T_RUN_SLOPE[t], m - k)
        k = m
    return total


cdef inline int _contraction(const uchar_t* data, Py_ssize_t j, Py_ssize_t n) noexcept nogil:
    cdef unsigned int a, b
    if j + 1 >= n or data[j] != 39:
        return 0
    a = <unsigned int>data[j + 1] | 0x20
    if a == 0x73 or a == 0x74 or a == 0x6D or a == 0x64:
        return 2
    if j + 2 < n:
        b = <unsigned int>data[j + 2] | 0x20
        if (a == 0x72 and b == 0x65) or (a == 0x76 and b == 0x65) or (a == 0x6C and b == 0x6C):
            return 3
    return 0


cdef long long _estimate_milli(const uchar_t* data, Py_ssize_t n) except -1:
    """One specialisation per string kind (1, 2 or 4 bytes per code point): no per-character
    kind switch (bench_fast: count_text_tokens, estimator speed vs exact)."""
    cdef Py_ssize_t i = 0, j, last_nl, rest, r, length, nbytes
    cdef long long total = 0
    cdef int prefix = 0, space_lead = 0, k, k2, nk, g, g2, gi, best, c
    cdef bint up, up2, prev_upper, sym
    cdef Py_ssize_t counts[N_GROUPS]
    cdef Py_UCS4 ch
    while i < n:
        ch = data[i]
        k = _kind_full(ch, &g, &up)
        if _is_letter(k):
            prev_upper = True
            j = i
            # ASCII letters first: most words never need the per-script counts
            while j < n:
                ch = data[j]
                if ch >= 128:
                    break
                k2 = ASCII_KIND[ch]
                if k2 > K_UPPER:
                    break
                up2 = k2 == K_UPPER
                if up2 and not prev_upper:
                    break
                prev_upper = up2
                j += 1
            best = 0
            if j < n and data[j] >= 128:
                for gi in range(N_GROUPS):
                    counts[gi] = 0
                counts[0] = j - i
                while j < n:
                    ch = data[j]
                    if ch < 128:
                        k2 = ASCII_KIND[ch]
                        g2 = 0
                        up2 = k2 == K_UPPER
                    else:
                        k2 = _kind_full(ch, &g2, &up2)
                    if not _is_letter(k2):
                        break
                    if up2 and not prev_upper:
                        break
                    prev_upper = up2
                    counts[g2] += 1
                    j += 1
                for gi in range(1, N_GROUPS):
                    if counts[gi] > counts[best]:
                        best = gi
                if best == 0 and counts[G_LATX]:
                    best = G_LATX
            length = j - i
            c = _contraction(data, j, n)
            if c:
                length += c - 1
                j += c
            total += _run(&T_WORD[best][prefix][0], WORD_LEN, T_WORD_SLOPE[best], length)
            prefix = 0
            i = j
        elif k == K_DIGIT:
            j = i + 1
            while j < n and _kind1(data[j]) == K_DIGIT:
                j += 1
            total += (j - i + 2) // 3 * 1000
            i = j
        elif k == K_SPACE or k == K_WS or k == K_NL:
            j = i
            last_nl = -1
            while j < n:
                k2 = _kind1(data[j])
                if k2 == K_NL:
                    last_nl = j
                elif not (k2 == K_SPACE or k2 == K_WS):
                    break
                j += 1
            rest = i
            if last_nl >= 0:
                total += _ws_cost(data, i, last_nl + 1, 10, &T_NL[0][0])
                rest = last_nl + 1
            r = j - rest
            if r > 0 and j < n:
                nk = _kind1(data[j])
                if _is_letter(nk):
                    prefix = 1
                    r -= 1
                elif (nk == K_PUNCT or nk == K_SYM) and data[j - 1] == 32:
                    space_lead = 1
                    r -= 1
                elif nk == K_DIGIT and r > 1:
                    total += _ws_cost(data, rest, j - 1, 32, &T_WS[0][0])
                    rest = j - 1
                    r = 1
            if r > 0:
                total += _ws_cost(data, rest, rest + r, 32, &T_WS[0][0])
            i = j
        else:
            j = i
            nbytes = 0
            sym = False
            while j < n:
                ch = data[j]
                k2 = _kind1(ch)
                if k2 == K_PUNCT:
                    nbytes += 1
                elif k2 == K_SYM:
                    nbytes += _utf8_len(ch)
                    sym = True
                else:
                    break
                j += 1
            if (j - i == 1 and not space_lead and j < n
                    and _is_letter(_kind1(data[j]))):
                prefix = 2
                i = j
                continue
            while j < n:
                ch = data[j]
                if ch != 10 and ch != 13:
                    break
                nbytes += 1
                j += 1
            if sym:
                total += _run(&T_SYM[space_lead][0], SYM_LEN, T_SYM_SLOPE, nbytes)
            else:
                total += _run(&T_PUNCT[space_lead][0], PUNCT_LEN, T_PUNCT_SLOPE, nbytes)
            space_lead = 0
            i = j
    return total


cpdef long count_text_tokens(str text) except -1:
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(text)
    cdef int kind = PyUnicode_KIND(text)
    cdef const void* data = PyUnicode_DATA(text)
    cdef long long milli
    if kind == 1:
        milli = _estimate_milli(<const unsigned char*>data, n)
    elif kind == 2:
        milli = _estimate_milli(<const unsigned short*>data, n)
    else:
        milli = _estimate_milli(<const unsigned int*>data, n)
    return (milli + 500) // 1000


count_chat_tokens = make_count_chat(count_text_tokens)
