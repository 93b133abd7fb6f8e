"""The compiled parts of tamer: the walker's inner loop (src/tamer/_cwalk.c) and the plain-file part of a
restore (src/tamer/_crestore.c) and the backup's tar tap (src/tamer/_ctap.c) and the backup's own archive
writer (src/tamer/_cpack.c).

Each is optional, and built or given up on its own: where no C compiler or Python headers are at hand
the build goes on without it, and tamer walks, restores and taps backups in Python (the same results,
more CPU per file; tamer.compiled loads what was built).

The vendored BLAKE3 (src/tamer/_blake3/README) that _ctap and _crestore hash with degrades on its own
too: when its SIMD parts do not compile (an old compiler, an assembler without AVX-512) they are left
out (BLAKE3's portable code serves, the same digests); when BLAKE3 does not compile at all, _ctap and
_crestore are built without it (TAMER_NO_BLAKE3, src/tamer/_b3none.h): they then hash with the blake3
package, as the Python path does, and say so (their native_blake3 is 0). Before, a failed BLAKE3 compile
dropped both extensions whole.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import BaseError, CCompilerError

B3_BATCH = "src/tamer/_b3batch.c"
BLAKE3_PORTABLE = [f"src/tamer/_blake3/{name}.c" for name in ("blake3", "blake3_dispatch", "blake3_portable")]
BLAKE3_SIMD = {isa: f"src/tamer/_blake3/x86_{isa}.c" for isa in ("sse2", "sse41", "avx2", "avx512")}
BLAKE3 = [B3_BATCH, *BLAKE3_PORTABLE, *BLAKE3_SIMD.values()]
FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
# blake3_neon.c is not vendored: on AArch64 BLAKE3 would refer to it and the link fail; its portable code
# serves there instead
NO_NEON = ("BLAKE3_USE_NEON", "0")


def _blake3_variants(ext: Extension) -> list[tuple[str, list[str], list[tuple[str, str | None]]]]:
    """(what, sources, macros) to try in turn for an extension that hashes with BLAKE3: all of it, then
    without its SIMD parts, then without BLAKE3."""
    own = [s for s in ext.sources if s not in BLAKE3]
    macros = [m for m in ext.define_macros if m[0] != "BLAKE3_USE_NEON"]
    no_simd = [(f"BLAKE3_NO_{isa.upper()}", "1") for isa in BLAKE3_SIMD]
    return [
        ("with BLAKE3", list(ext.sources), list(ext.define_macros)),
        (
            "with BLAKE3's portable code only",
            [*own, B3_BATCH, *BLAKE3_PORTABLE],
            [*macros, NO_NEON, *no_simd],
        ),
        ("without BLAKE3", own, [*macros, ("TAMER_NO_BLAKE3", "1")]),
    ]


class BuildExt(build_ext):
    """Each extension on its own; one that hashes with BLAKE3 tried again with less of it when it fails."""

    def build_extension(self, ext: Extension) -> None:
        if not any(s in BLAKE3 for s in ext.sources):
            super().build_extension(ext)
            return
        variants = _blake3_variants(ext)
        for n, (what, sources, macros) in enumerate(variants):
            ext.sources, ext.define_macros = sources, macros
            try:
                super().build_extension(ext)
            except (CCompilerError, BaseError) as exc:  # what build_ext's optional=True handling catches
                if n == len(variants) - 1:
                    raise  # optional=True: setuptools says it and goes on without this one
                why = str(exc).splitlines()[0][-200:] if str(exc) else type(exc).__name__
                print(
                    f"tamer: building {ext.name} {what} failed (...{why}); trying {variants[n + 1][0]}",
                    file=sys.stderr,
                )
                self.force = True  # the next try recompiles what it shares with this one, differently
                continue
            if n:
                print(f"tamer: {ext.name} built {what}", file=sys.stderr)
            return


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "tamer._cwalk",
            ["src/tamer/_cwalk.c"],
            optional=True,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "tamer._crestore",
            # with the same vendored BLAKE3 as the tap below: a restore checks every file's digest in C
            ["src/tamer/_crestore.c", *BLAKE3],
            define_macros=[NO_NEON],
            optional=True,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "tamer._cpack",
            # the compiled backup writer: reads, hashes (the vendored BLAKE3) and packs the data part itself;
            # built without BLAKE3 it is not offered (archive_pack.packer_module), and GNU tar writes instead
            ["src/tamer/_cpack.c", "src/tamer/_cpack_tree.c", *BLAKE3],
            define_macros=[NO_NEON],
            optional=True,
            extra_compile_args=FLAGS,
        ),
        Extension(
            "tamer._ctap",
            # with the vendored BLAKE3 (src/tamer/_blake3/README) that hashes every backed-up file
            ["src/tamer/_ctap.c", *BLAKE3],
            define_macros=[NO_NEON],
            optional=True,
            extra_compile_args=FLAGS,
        ),
    ],
)
