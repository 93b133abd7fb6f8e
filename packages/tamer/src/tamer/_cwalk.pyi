# tamer/_cwalk.c: the walker's inner loop in C (optional; see tamer.sizes._walk)
def walk(
    path: str, recurse: bool, root_dev: int, skip: frozenset[str], follow: bool, want_subdirs: bool, /
) -> tuple[int, int, int, int, int, list[tuple[int, int, int, int]], list[str] | None]: ...
