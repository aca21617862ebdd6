"""Errors a user can fix (a missing file, a bad image, an absent dataset). The CLI prints their
message as is, with no traceback, and exits with status 2; library callers catch them by type."""


class VqfrError(Exception):
    """Base of every user-fixable error: the message says what is wrong and what to do."""


class AssetUnavailable(VqfrError):
    """A weights/parameter file is neither cached nor given nor downloadable."""


class ImageError(VqfrError):
    """An image file cannot be used (unreadable, wrong size/mode, ...); names the file."""


class DatasetUnavailable(VqfrError):
    """A registered dataset is not under the data root; says how to get and import it."""
