/* blake3_avx512.c compiled for its instruction set (avx512f,avx512vl) in this one translation unit: setuptools gives every
 * source of an extension the same flags, so the target is set here instead of with -m flags. The code only
 * runs where blake3_dispatch.c's CPUID check finds avx512f,avx512vl. Empty on other architectures (dispatch then never
 * refers to it). */
#if defined(__x86_64__) || defined(__i386__)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl"))), apply_to = function)
#include "blake3_avx512.c"
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512vl")
#include "blake3_avx512.c"
#endif
#endif
