"""`tamer compose check`: a compose file read as Compose reads it, checked against the images it names.

model.py turns the parsed file into services and mounts (pure); rules.py finds the problems
(pure: model + engine facts -> findings with codes); fix.py names the anonymous volumes in the
round-trip document (pure); files.py reads and writes files; facts.py asks the engine.
"""

from __future__ import annotations
