"""Names that come from an archive's header or from a volume's files reach the terminal in human output:
escape sequences in them must not (a hostile archive could recolour, hide or rewrite what `verify` says).
The JSON envelope keeps them exactly (it is data, escaped by JSON)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
from pathlib import Path
from typing import Any

import zstandard

HOSTILE = "evil\x1b[2K\rok: all good\x1b]0;title\x07\nline2"


def _rewrite_header(src: Path, dst: Path, volume: str) -> None:
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(src.read_bytes())).read()
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(raw), mode="r:", ignore_zeros=True) as old,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as new,
    ):
        for m in old:
            f = old.extractfile(m) if m.isfile() else None
            data = f.read() if f else None
            if m.name == "tamer-backup.json" and data is not None:
                header = json.loads(data)
                header["volume"] = volume
                data = json.dumps(header).encode()
                m.size = len(data)
            new.addfile(m, io.BytesIO(data) if data is not None else None)
    dst.write_bytes(zstandard.ZstdCompressor().compress(out.getvalue()))


def test_no_escape_sequence_from_an_archive_or_a_volume_reaches_the_terminal(
    eng: Any, tmp_path: Path
) -> None:
    eng.docker("volume", "create", "s8_term")
    data = Path(json.loads(eng.docker("volume", "inspect", "s8_term"))[0]["Mountpoint"])
    (data / "f").write_text("x")
    with socket.socket(socket.AF_UNIX) as s:  # a socket is skipped with a warning naming it
        s.bind(str(data / "s\x1b[31mred"))
    archive = tmp_path / "b.tar.zst"
    r = eng.tamer("volume", "backup", "s8_term", "-o", str(archive), "--writer", "python")
    assert r.returncode == 0, r.stderr
    assert "skipped" in r.stdout and "\x1b" not in r.stdout, r.stdout
    hostile = tmp_path / "hostile.tar.zst"
    _rewrite_header(archive, hostile, HOSTILE)
    r = eng.tamer("volume", "verify", str(hostile))
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout and "\r" not in r.stdout, repr(r.stdout)
    assert r.stdout.count("\n") == 1, repr(r.stdout)  # one line: the name cannot start a forged one
    r = eng.tamer("--json", "volume", "verify", str(hostile))
    assert json.loads(r.stdout)["data"]["volume"] == HOSTILE
