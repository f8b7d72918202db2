"""Build of lossctl's one compiled part, the CSV number parser (lossctl/_fastcsv.c).

Everything else is in pyproject.toml.  The extension is optional: without a C compiler (or on a platform it
is not written for) the build skips it and lossctl parses every CSV with pyarrow, as fast as before it.
"""
import sys

from setuptools import Extension, setup

ext = []
if sys.byteorder == "little" and sys.maxsize > 2**32 and not sys.platform.startswith("win"):
    ext.append(Extension("lossctl._fastcsv", ["lossctl/_fastcsv.c"], depends=["lossctl/_pow5.h"],
                         extra_compile_args=["-O3"], optional=True))
setup(ext_modules=ext)
