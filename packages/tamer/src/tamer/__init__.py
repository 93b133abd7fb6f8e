"""tamer: keep a Docker host from becoming a 100 GB blob.

See what every image, container, volume, log and build cache costs and who
owns it (`tamer df`, `tamer ls`), clean by policy without losing data, and keep
named volumes on the drive of your choice.
"""

from __future__ import annotations

from tamer.errors import TamerError

__all__ = ["TamerError", "__version__"]
__version__ = "0.1.0"
