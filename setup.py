"""Build step: a wheel carries the suite's declarative files (``datasets/*.toml`` manifests and
``eval/*.toml`` paper-table specs) as ``vqfr/_bundled/<folder>/``; see ``vqfr/resources.py``.
Everything else is in pyproject.toml."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FOLDERS = ("datasets", "eval")


class BuildPyWithDeclarativeFiles(build_py):
    def run(self):
        super().run()
        here = Path(__file__).resolve().parent
        for folder in FOLDERS:
            target = Path(self.build_lib) / "vqfr" / "_bundled" / folder
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((here / folder).glob("*.toml")):
                shutil.copyfile(source, target / source.name)


setup(cmdclass={"build_py": BuildPyWithDeclarativeFiles})
