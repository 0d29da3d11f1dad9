"""Errors users can catch: one small hierarchy, every message names the input and what would be right."""

from __future__ import annotations

__all__ = [
    "MisoError",
    "InputError",
    "CatalogError",
    "NoItemsFoundError",
    "CatalogUnreachableError",
    "MissingBandError",
    "ObservationError",
    "CheckpointError",
    "IncompatibleCubeError",
    "HubError",
    "IntegrityError",
    "OfflineError",
    "UnsafeCheckpointError",
    "MisoWarning",
    "RechunkWarning",
    "UnverifiedCheckpointWarning",
]


class MisoError(Exception):
    """Base class of every error miso_xr raises on purpose."""


class InputError(MisoError, ValueError):
    """An argument or file given by the user is not usable as given."""


class CatalogError(MisoError):
    """A STAC catalog could not give what was asked."""


class NoItemsFoundError(CatalogError, LookupError):
    """A STAC search matched no item (the message names collection, bbox and datetime)."""


class CatalogUnreachableError(CatalogError, ConnectionError):
    """A STAC API did not answer in time or refused the connection."""


class MissingBandError(InputError):
    """A band or modality needed is not present (in STAC items, a cube or a checkpoint)."""


class ObservationError(InputError):
    """Field observations are unusable (nothing valid left, wrong columns, unknown labels)."""


class CheckpointError(MisoError, ValueError):
    """A checkpoint file is malformed or not a miso_xr checkpoint."""


class IncompatibleCubeError(InputError):
    """A cube does not carry what a model needs (modalities, bands, resolution, CRS)."""


class HubError(MisoError):
    """A checkpoint hub could not deliver an entry."""


class IntegrityError(HubError):
    """Downloaded or cached bytes do not match the expected sha256 or size."""


class OfflineError(HubError):
    """Offline mode was asked and the entry is not in the cache."""


class UnsafeCheckpointError(HubError):
    """A checkpoint format that can run code when loaded (pickle: .pt/.pth/.ckpt/.pkl) was refused."""


class MisoWarning(UserWarning):
    """Base class of the warnings miso_xr gives (filter them with this class)."""


class RechunkWarning(MisoWarning):
    """``predict`` changed the cube's chunks; the message says how and why (choose chunks to avoid it)."""


class UnverifiedCheckpointWarning(MisoWarning):
    """A checkpoint written before tensor digests existed: loaded, but its bytes are unchecked."""
