/* blake3_avx2.c compiled for its instruction set (avx2) in this one translation unit: setuptools gives every
 * source of an extension the same flags, so the target is set here instead of with -m flags. The code only
 * runs where blake3_dispatch.c's CPUID check finds avx2. Empty on other architectures (dispatch then never
 * refers to it). */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#include "blake3_avx2.c"
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC target("avx2")
#include "blake3_avx2.c"
#endif
#endif
