"""Exports of a wheelhouse: Docker build contexts and images, mirrors, bundles, merges.

One module per verb: :mod:`.docker`, :mod:`.publish`, :mod:`.bundle`, :mod:`.merge`; the
click commands live in :mod:`.commands`.
"""

from __future__ import annotations
