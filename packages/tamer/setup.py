"""The compiled parts of tamer: the walker's inner loop (src/tamer/_cwalk.c) and the plain-file part of a
restore (src/tamer/_crestore.c) and the backup's tar tap (src/tamer/_ctap.c).

It is optional: where no C compiler or Python headers are at hand the build goes on without it,
and tamer walks, restores and taps backups in Python (the same results, more CPU per file).
"""

from setuptools import Extension, setup

# BLAKE3 (vendored, src/tamer/_blake3/README) and tamer's batched use of it, compiled into each extension
# that hashes: the tap (backup) and the restore
BLAKE3 = [
    "src/tamer/_b3batch.c",
    *(f"src/tamer/_blake3/{name}.c" for name in ("blake3", "blake3_dispatch", "blake3_portable")),
    *(f"src/tamer/_blake3/x86_{isa}.c" for isa in ("sse2", "sse41", "avx2", "avx512")),
]

setup(
    ext_modules=[
        Extension(
            "tamer._cwalk",
            ["src/tamer/_cwalk.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        Extension(
            "tamer._crestore",
            # with the same vendored BLAKE3 as the tap below: a restore checks every file's digest in C
            ["src/tamer/_crestore.c", *BLAKE3],
            define_macros=[("BLAKE3_USE_NEON", "0")],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
        Extension(
            "tamer._ctap",
            # with the vendored BLAKE3 (src/tamer/_blake3/README) that hashes every backed-up file
            ["src/tamer/_ctap.c", *BLAKE3],
            # blake3_neon.c is not vendored: on AArch64 BLAKE3 would refer to it and the link fail (the
            # tap then fell back to Python); its portable code serves there instead
            define_macros=[("BLAKE3_USE_NEON", "0")],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        ),
    ]
)
