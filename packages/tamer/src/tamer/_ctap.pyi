# tamer/_ctap.c: the backup's tar tap in C (optional; see tamer.volumes.archive_tar._TarTap, the reference)
from collections.abc import Callable, Sequence
from typing import Any

class Tap:
    def __init__(
        self,
        stats: Any,
        files: dict[str, Any],
        xattrs: dict[str, dict[str, str]],
        new_digest: Callable[[], Any],
        pax_records: Callable[[bytes], dict[str, str]],
        pax_xattrs: Callable[[dict[str, str]], dict[str, str]],
        num: Callable[[bytes], int],
        data_prefix: bytes,
        native_blake3: bool = False,
    ) -> None: ...
    @property
    def ended(self) -> bool: ...
    def feed(self, chunk: bytes | memoryview, /) -> None: ...

def blake3_hexdigests(inputs: Sequence[bytes | bytearray | memoryview], /) -> list[str]: ...
def readinto_full(fd: int, buffer: bytearray | memoryview, /) -> int: ...
