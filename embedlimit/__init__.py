"""embedlimit: embed millions of texts through the OpenAI embeddings API at the full rate limit.

This module only re-exports the public names; each lives in a private module.
"""

from embedlimit._version import __version__

__all__ = ["__version__"]
