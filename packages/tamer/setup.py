"""The one compiled part of tamer: the walker's inner loop (src/tamer/_cwalk.c).

It is optional: where no C compiler or Python headers are at hand the build goes on without it,
and tamer.sizes walks in Python (the same figures, about twice the CPU per file).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tamer._cwalk",
            ["src/tamer/_cwalk.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
