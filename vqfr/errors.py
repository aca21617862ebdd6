"""Errors a user can fix (a missing file, a bad image, an absent dataset). The CLI prints their
message as is, with no traceback, and exits with status 2; library callers catch them by type."""


class VqfrError(Exception):
    """Base of every user-fixable error: the message says what is wrong and what to do."""


class AssetUnavailable(VqfrError):
    """A weights/parameter file is neither cached nor given nor downloadable."""


class ImageError(VqfrError):
    """An image file cannot be used (unreadable, wrong size/mode, ...); names the file."""


class ImageTooSmall(VqfrError):
    """Images too small for a metric's options (e.g. ``crop_border``); ``size`` is their
    (height, width), so a caller that knows the files can name them."""

    def __init__(self, message: str, size: tuple[int, int]) -> None:
        super().__init__(message)
        self.size = tuple(size)


class DatasetUnavailable(VqfrError):
    """A registered dataset is not under the data root; says how to get and import it."""


class OutputError(VqfrError):
    """A file could not be written (disk full, read-only, no permission); names the path and
    what was left."""


def output_error(path, exc: OSError) -> OutputError:
    """``exc`` (raised while writing ``path``) as a message saying what is on disk now: writes
    are atomic, so the file keeps its previous content or does not exist."""
    from pathlib import Path

    state = ("it keeps its previous content" if Path(path).exists()
             else "it was not created")
    return OutputError(f"{path}: cannot write ({exc.strerror or exc}); {state}, and no partial "
                       "file was left")
