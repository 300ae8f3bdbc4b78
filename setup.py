"""Build hook: ship the app stylesheets from the top-level ``styles/`` inside the wheel."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithStyles(build_py):
    def run(self):
        super().run()
        source = Path(__file__).parent / "styles"
        target = Path(self.build_lib) / "toka" / "styles"
        target.mkdir(parents=True, exist_ok=True)
        for sheet in source.glob("*.tcss"):
            shutil.copy2(sheet, target / sheet.name)


setup(cmdclass={"build_py": BuildWithStyles})
