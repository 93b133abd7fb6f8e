"""README recipe step 4, `tamer volume backup mongo_data -o /backups/mongo_data.tar.zst`, where the
folder does not exist yet: the error says what to do and that nothing was written (it said only
"does not exist; expected an existing folder")."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
from tamer.errors import UsageError
from tamer.volumes.backup import backup_volume


def test_backup_into_a_missing_folder_says_what_to_do(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "s9_readme_backup")
    out = tmp_path / "backups" / "mongo_data.tar.zst"
    with pytest.raises(UsageError) as caught:
        backup_volume(eng.engine, "s9_readme_backup", out)
    message = str(caught.value)
    assert f"folder {out.parent} for the backup does not exist" in message
    assert f"mkdir -p {shlex.quote(str(out.parent))}" in message and "nothing was written" in message, message
    assert not out.parent.exists()  # nothing made on the way
