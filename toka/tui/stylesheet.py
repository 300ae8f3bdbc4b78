"""Where the console's one stylesheet is: inside the installed package (a wheel ships
``styles/*.tcss`` as ``toka/styles/``), or in the repository's ``styles/`` for an
editable install."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from toka.core.errors import TokaError

SHEET = "app.tcss"
REPO_STYLES = Path(__file__).resolve().parents[2] / "styles"


def stylesheet_path(package: str = "toka", repo_styles: Path = REPO_STYLES) -> Path:
    """The path of ``app.tcss``: the packaged copy first, then the repository's."""
    packaged = resources.files(package) / "styles" / SHEET
    if packaged.is_file():
        return Path(str(packaged))
    local = repo_styles / SHEET
    if local.is_file():
        return local
    raise TokaError(
        f"the console stylesheet is missing: neither {package}/styles/{SHEET} in the installed "
        f"package nor {local} exists (reinstall toka)"
    )
