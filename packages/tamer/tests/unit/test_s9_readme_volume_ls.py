"""`tamer volume ls` (README, "Volumes where you want them"): a table whose columns line up.

The table was formatted at fixed widths (30 for the name), so an anonymous volume's 64-hex name
pushed PLACEMENT and DATA out of their columns, and a bind folder's path (any text the volume's
creator chose, newline and ESC included) reached the terminal raw.
"""

from __future__ import annotations

from tamer.cli.volume_cmds import volume_places_table
from tamer.volumes.place import VolumePlace


def _place(name: str, placement: str, data_path: str) -> VolumePlace:
    return VolumePlace(name=name, driver="local", placement=placement, data_path=data_path, mountpoint="")


def test_columns_line_up_past_thirty_characters() -> None:
    anon = "68e684d1b785aabc2338e0742947f5b47f96168dcad6d703ff14843762059799"
    text = volume_places_table(
        [
            _place(anon, "default", f"/var/lib/docker/volumes/{anon}/_data"),
            _place("mongo_data", "bind", "/HDD/docker_volumes/mongo_data"),
            _place("plug", "plugin", ""),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "PLACEMENT", "DATA"]
    starts = {
        line.index(word) for line, word in zip(lines, ["PLACEMENT", "default", "bind", "plugin"], strict=True)
    }
    assert len(starts) == 1, text  # every PLACEMENT cell starts in the same column
    data_col = lines[0].index("DATA")
    assert lines[1][data_col:].startswith("/var/lib/docker/volumes/")
    assert lines[2][data_col:] == "/HDD/docker_volumes/mongo_data"
    assert lines[3][data_col:] == "-"  # a plugin's data is where only the plugin knows


def test_control_characters_in_a_bind_path_are_not_written_to_the_terminal() -> None:
    text = volume_places_table([_place("evil", "bind", "/tmp/x\x1b[2J\ny\u202e")])
    assert "\x1b" not in text and "\u202e" not in text
    assert len(text.splitlines()) == 2  # the newline forged no row
    assert "/tmp/x?[2J?y?" in text
