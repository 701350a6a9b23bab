"""The package's public surface: `__all__` lists exactly the re-exported names."""

from __future__ import annotations

import types
from pathlib import Path

import embedlimit


def test_all_names_importable() -> None:
    for name in embedlimit.__all__:
        assert hasattr(embedlimit, name), name


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(embedlimit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public <= set(embedlimit.__all__) | {"annotations"}


def test_all_without_duplicates() -> None:
    assert len(embedlimit.__all__) == len(set(embedlimit.__all__))


def test_py_typed_marker_shipped() -> None:
    package_dir = Path(embedlimit.__file__ or "").parent
    assert (package_dir / "py.typed").is_file()
