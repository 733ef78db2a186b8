"""Unpacking image layers into a snapshotter (containerd's ``core/unpack``).

:func:`~pycontainerd.core.unpack.unpacker.unpack` applies an image's layers for one platform
into a snapshotter, one extraction snapshot per missing layer, committed under its chain ID;
:class:`~pycontainerd.core.unpack.apply.LocalApplier` is the in-process
:class:`~pycontainerd.core.diff.Applier` it uses when no differ is given.
"""

from pycontainerd.core.unpack.apply import LocalApplier
from pycontainerd.core.unpack.unpacker import UnpackProgress, UnpackResult, unpack

__all__ = ["LocalApplier", "UnpackProgress", "UnpackResult", "unpack"]
