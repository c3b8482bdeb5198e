# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Hot-path kernels, compiled. Same names and behaviour as `_hotpath_py.py`, whose
docstrings are the contract; tests run both and property tests check that they agree.
Tables and constants are read from the twin (and `_token_tables`) at import, so the two
cannot drift apart."""

import hashlib

import orjson

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Calloc, PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.math cimport INFINITY, ceil, floor, frexp, ldexp
from libc.string cimport memchr, memcmp, memset

from . import _hotpath_py as _py
from . import _token_tables as _T
from ._chat import make_count_chat


cdef extern from "Python.h":
    Py_ssize_t PyUnicode_GET_LENGTH(object u)
    int PyUnicode_KIND(object u)
    void* PyUnicode_DATA(object u)
    Py_UCS4 PyUnicode_READ(int kind, const void* data, Py_ssize_t index) nogil


orjson_loads = orjson.loads

__all__ = ["SSEEvent", "SSEParser", "encode_sse", "extract_chunk", "SHAPE_OTHER", "SHAPE_CHOICES",
           "SHAPE_SIMPLE", "count_text_tokens",
           "count_chat_tokens", "cache_key", "cache_key_hex", "CACHE_EXCLUDED",
           "WeightedPicker", "LatencyWindow"]


include "_sse.pxi"
include "_tokens.pxi"
include "_extract.pxi"
include "_cachekey.pxi"
include "_select.pxi"
include "_latency.pxi"
