"""`reconcile demo`: the migration incident of the seed article, as an ordinary project folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from .errors import ReconcileError
from .project import CONFIG_FILE

PROJECT_FILES = (CONFIG_FILE, "data_dictionary", "mappings")
DATABASES = ("legacy_crm.sqlite", "new_crm.sqlite")


def shipped_project() -> Path:
    """The repository root, which holds the demo project's YAML (needs a source checkout)."""
    import fixtures

    root = Path(fixtures.__file__).resolve().parent.parent
    if not (root / CONFIG_FILE).is_file():
        raise ReconcileError(
            f"the demo project files are not next to {fixtures.__file__}",
            hint="Install reconcile from a clone of its repository (pip install -e .).",
        )
    return root


def prepare(out: Path, fresh: bool = False, n: int = 5000, progress=lambda _: None) -> dict | None:
    """Copy the project files into `out` unless present; build the databases if absent or fresh."""
    from fixtures.demo import build_demo

    out.mkdir(parents=True, exist_ok=True)
    root = shipped_project()
    for name in PROJECT_FILES:
        if not (out / name).exists():
            src = root / name
            if src.is_dir():
                shutil.copytree(src, out / name)
            else:
                shutil.copy2(src, out / name)
    if fresh or not all((out / db).is_file() for db in DATABASES):
        progress(f"building the demo CRMs in {out} ({n:,} opportunities)")
        return build_demo(out, n=n)
    progress(f"using the demo CRMs already in {out} (--fresh rebuilds them)")
    return None
