"""faithful: decode model output distributions properly.

Models output distributions; taking the argmax is not sampling. faithful gives
exact, fast, reproducible samplers, the sequence decoders people know, and a way
to measure whether a decoder reproduces the model's distribution.
"""

from __future__ import annotations

from faithful.errors import FaithfulError

__all__ = ["FaithfulError", "__version__"]
__version__ = "0.1.0"
