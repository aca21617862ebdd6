"""``vqfr-eval restore``: restore image files with one model and write ``OUT/<stem>.png``.
A file that cannot be read or has the wrong size is reported by name; the others are still
restored."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vqfr.data.images import list_images, read_image, write_png_atomic
from vqfr.errors import ImageError, VqfrError
from vqfr.run.progress import progress
from vqfr.run.restorer import Restorer, size_error
from vqfr.run.runner import to_arrays, to_batch_tensor


def input_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        return list_images(path)
    if path.is_file():
        return [path]
    raise VqfrError(f"--input {path}: no such file or directory")


def check_outputs(inputs: list[Path], output_dir: Path) -> None:
    """Refuse, before anything is restored, outputs that two inputs would share or that would
    replace an input (``--output`` equal to ``--input``)."""
    stems = [p.stem for p in inputs]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise VqfrError("several inputs would be written to the same output name: "
                        + ", ".join(f"{s}.png" for s in clashes))
    replaced = [p for p in inputs
                if (Path(output_dir) / f"{p.stem}.png").resolve() == Path(p).resolve()]
    if replaced:
        raise VqfrError(f"--output {output_dir}: the results would overwrite {len(replaced)} "
                        f"input file(s) ({', '.join(str(p) for p in replaced[:5])}"
                        f"{', ...' if len(replaced) > 5 else ''}); nothing was written. "
                        "Choose another output folder.")


def restore_files(restorer: Restorer, inputs: list[Path], output_dir: Path,
                  batch_size: int = 1, allow_size: str = "512", workers: int = 2,
                  show_progress: bool = True) -> dict[Path, str]:
    """Restore ``inputs`` in batches of same-size images; returns {file: why it failed}."""
    check_outputs(inputs, output_dir)
    failed: dict[Path, str] = {}
    bar = progress(len(inputs), restorer.method.slug, show_progress)

    def load(path: Path):
        try:
            array = read_image(path)
        except ImageError as exc:
            return path, None, str(exc)
        problem = size_error(restorer.method, *array.shape[:2], allow_size=allow_size)
        return path, (None if problem else array), problem and f"{path}: {problem}"

    with ThreadPoolExecutor(workers) as pool:
        writes = []
        for start in range(0, len(inputs), batch_size):
            by_shape: dict[tuple, list] = {}
            for path, array, problem in pool.map(load, inputs[start:start + batch_size]):
                if problem:
                    failed[path] = problem
                else:
                    by_shape.setdefault(array.shape, []).append((path, array))
            for group in by_shape.values():
                restored = to_arrays(restorer(to_batch_tensor([a for _, a in group])))
                writes += [pool.submit(write_png_atomic, Path(output_dir) / f"{p.stem}.png", out)
                           for (p, _), out in zip(group, restored)]
            bar.update(min(batch_size, len(inputs) - start))
        for write in writes:
            write.result()
    bar.close()
    return failed
