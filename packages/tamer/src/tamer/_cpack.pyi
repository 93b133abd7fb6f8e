# tamer/_cpack.c: the backup archive's data part, read, hashed and packed in C (optional; the pure-Python
# writer in tamer.volumes.archive_write is the reference; tamer.volumes.archive_pack drives it)
import os
from collections.abc import Callable
from typing import Any

native_blake3: int
PIECE: int

class Packer:
    def __init__(
        self,
        root: str | bytes | os.PathLike[str] | os.PathLike[bytes],
        data_prefix: bytes,
        header: Callable[..., bytes],
        files: dict[str, Any],
        xattrs: dict[str, dict[str, bytes]],
        warnings: list[str],
    ) -> None: ...
    def fill(self) -> int: ...
    def close(self) -> None: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    @property
    def entries(self) -> int: ...
    @property
    def files(self) -> int: ...
    @property
    def bytes(self) -> int: ...
