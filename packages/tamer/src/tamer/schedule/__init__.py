"""`tamer schedule`: systemd units that run tamer on a timer (units.py: pure text; files.py: the unit folder)."""

from __future__ import annotations
