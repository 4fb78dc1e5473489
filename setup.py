"""The one compiled part: the fast path of EDIFACT message checking (see its C file).

Everything else about the package is in pyproject.toml; setuptools reads both.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("singlewindow.mig.edifact._accel", ["src/singlewindow/mig/edifact/_accel.c"],
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"]),
])
