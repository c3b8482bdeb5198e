"""Only the extension build lives here; metadata is in pyproject.toml.

FAREGATE_NO_EXTENSIONS=1 skips the Cython build, and a missing compiler or Cython
falls back to the pure-Python twin instead of failing the install (the aiohttp pattern).
"""
import os

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler: the twin is used, results are the same
            print(f"WARNING: Faregate's C extension was not built ({exc}); using pure Python")

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"WARNING: building {ext.name} failed ({exc}); using pure Python")


ext_modules = []
if not os.environ.get("FAREGATE_NO_EXTENSIONS"):
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        print("WARNING: Cython is not installed; using pure Python")
    else:
        ext_modules = cythonize(
            [Extension("proxy._fast._hotpath_c", ["proxy/_fast/_hotpath_c.pyx"],
                       extra_compile_args=["-O2"])],
            compiler_directives={"language_level": "3", "boundscheck": False,
                                 "wraparound": False, "cdivision": True},
            annotate=bool(os.environ.get("FAREGATE_CYTHON_ANNOTATE")),
        )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
