"""Find an asset's file: a user override, else the cache, else a download.

A file given with ``--asset`` whose sha256 is not the published one is used as given and
reported once per file and run: a ``NonOfficialAsset`` warning (the command line prints it as
one plain line) and ``official: false`` in the results' provenance. ``check_assets`` resolves
what a run needs up front and returns what cannot be had instead of raising, so a run can say
everything that is missing in one message, each file once.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vqfr.errors import AssetUnavailable, VqfrError
from vqfr.zoo.cache import hash_matches, remember_sha256, sha256_file, weights_dir
from vqfr.zoo.download import DownloadError, download_file, exclusive
from vqfr.zoo.registry import ASSETS, Asset


@dataclass(frozen=True)
class ResolvedAsset:
    name: str
    path: Path
    sha256: str                 # of the file actually used: the provenance recorded with results
    source: str                 # "override" | "cache" | "download"
    official: bool | None = None  # sha256 matches the catalogue; None when no hash is known

    def record(self) -> dict[str, object]:
        """What the results record about the file."""
        return {"asset": self.name, "path": str(self.path), "sha256": self.sha256,
                "source": self.source, "official": self.official}


class NonOfficialAsset(UserWarning):
    """A file given with --asset is not the published one (its sha256 differs)."""


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise VqfrError(f"unknown asset {name!r}; known assets: {', '.join(sorted(ASSETS))}") \
            from None


def asset_cache_path(name: str) -> Path:
    return weights_dir() / get_asset(name).filename


def expected_hash(asset: Asset) -> str:
    if asset.sha256:
        return f"sha256 {asset.sha256}"
    if asset.sha256_prefix:
        return f"sha256 starting with {asset.sha256_prefix}"
    return "no published hash"


def where_to_get(asset: Asset) -> str:
    parts = [*asset.urls, asset.manual] if asset.manual else list(asset.urls)
    return "\n             ".join(parts) or "no known source"


def unavailable(asset: Asset, reason: str) -> AssetUnavailable:
    """The error with everything a user needs to provide the file by hand."""
    return AssetUnavailable(
        f"asset {asset.name!r} ({asset.description}) is unavailable: {reason}\n"
        f"  file:      {asset.filename} ({expected_hash(asset)})\n"
        f"  get it:    {where_to_get(asset)}\n"
        f"  put it at: {weights_dir() / asset.filename}\n"
        f"  or pass:   --asset {asset.name}=/path/to/{asset.filename}")


_WARNED: set[tuple[Path, str]] = set()   # (file, sha256) reported in this run


def start_run() -> None:
    """Forget which non-official files were reported: a new run reports each once again."""
    _WARNED.clear()


def _report_non_official(asset: Asset, resolved: ResolvedAsset) -> None:
    key = (resolved.path, resolved.sha256)
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(NonOfficialAsset(
            f"{resolved.path} is not the official {asset.filename} of asset {asset.name!r} "
            f"({expected_hash(asset)}, got {resolved.sha256}); using it as given, and results "
            "made with it say official: false"), stacklevel=3)


def _checked(asset: Asset, path: Path, digest: str, source: str) -> ResolvedAsset:
    return ResolvedAsset(asset.name, path.resolve(), digest, source,
                         hash_matches(digest, asset.sha256, asset.sha256_prefix))


def resolve_asset(name: str, overrides: Mapping[str, str | Path] | None = None,
                  download: bool = True, quiet: bool = False) -> ResolvedAsset:
    """Locate (and if needed download) asset ``name``.

    An override path is used as it is (its sha256 is computed and recorded; a mismatch with the
    catalogue only warns). A cached file must match the known hash. Downloads are verified
    before they reach the cache.
    """
    asset = get_asset(name)
    if overrides and name in overrides:
        path = Path(overrides[name]).expanduser()
        if not path.is_file():
            raise unavailable(asset, f"the file given with --asset {name}={path} does not exist")
        resolved = _checked(asset, path, sha256_file(path), "override")
        if resolved.official is False:
            _report_non_official(asset, resolved)
        return resolved

    cached = weights_dir() / asset.filename
    if not cached.is_file():
        if not download:
            raise unavailable(asset, "not in the cache" + (
                f" (a run downloads it when it first needs it; or now: vqfr-eval models fetch "
                f"{asset.name})" if asset.urls else "; it cannot be downloaded automatically"))
        if not asset.urls:
            raise unavailable(asset, "it cannot be downloaded automatically")
        with exclusive(cached):
            if not cached.is_file():  # another process may have fetched it meanwhile
                return _download(asset, cached, quiet)

    resolved = _checked(asset, cached, sha256_file(cached), "cache")
    if resolved.official is False:
        raise unavailable(asset, f"the cached file {cached} has sha256 {resolved.sha256}, not "
                                 f"the official one (corrupt or another version): delete it to "
                                 f"download again, or pass it with --asset to use it as is")
    return resolved


def check_assets(names: Iterable[str], overrides: Mapping[str, str | Path] | None = None,
                 download: bool = True, quiet: bool = False,
                 ) -> tuple[dict[str, ResolvedAsset], dict[str, AssetUnavailable]]:
    """Resolve each asset once: (found, name -> why it cannot be had)."""
    found: dict[str, ResolvedAsset] = {}
    missing: dict[str, AssetUnavailable] = {}
    for name in dict.fromkeys(names):
        try:
            found[name] = resolve_asset(name, overrides, download=download, quiet=quiet)
        except AssetUnavailable as exc:
            missing[name] = exc
    return found, missing


def missing_files_text(missing: Mapping[str, AssetUnavailable],
                       needed_by: Mapping[str, list[str]]) -> str:
    """One block per missing file, each once, with what needs it and how to provide it."""
    blocks = [f"needed by {', '.join(needed_by.get(name, [])) or '?'}:\n  {exc}"
              for name, exc in missing.items()]
    return (f"{len(missing)} weight/parameter file(s) missing (`vqfr-eval models` lists every "
            "file):\n\n" + "\n\n".join(blocks))


def _download(asset: Asset, dest: Path, quiet: bool) -> ResolvedAsset:
    failures = []
    for url in asset.urls:
        try:
            digest = download_file(url, dest, sha256=asset.sha256,
                                   sha256_prefix=asset.sha256_prefix, quiet=quiet,
                                   what=f"asset {asset.name!r} ({asset.description})")
        except DownloadError as exc:
            failures.append(f"{url}: {exc}")
            continue
        remember_sha256(dest, digest)
        return _checked(asset, dest, digest, "download")
    raise unavailable(asset, "download failed\n    " + "\n    ".join(failures))
