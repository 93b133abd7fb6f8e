"""Attack: `tamer volume backup X -o <inside X's own folder>`. The backup wrote into the volume it was
reading (changing the data it claims to copy) and archived a partial copy of itself: "2 files" for a
volume holding one. The output must be refused when it is inside the volume's folder (physically)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_a_backup_into_its_own_volume_is_refused(eng: Any) -> None:
    eng.docker("volume", "create", "self-bk")
    data = Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "self-bk").strip())
    (data / "rows").write_bytes(b"r" * 100_000)
    out = data / "self.tar.zst"
    proc = eng.tamer("volume", "backup", "self-bk", "-o", str(out))
    assert proc.returncode in (1, 2) and "internal error" not in proc.stderr, proc
    assert sorted(p.name for p in data.iterdir()) == ["rows"], "the backup wrote into the volume it copies"
