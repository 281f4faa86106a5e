"""Packaging: stdlib names are not shadowed, every module imports, the wheel carries everything."""
from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]


def _folder_of(package: str) -> Path:
    """The source folder of a listed package, following package-dir."""
    for prefix, folder in sorted(PACKAGE_DIR.items(), key=lambda kv: -len(kv[0])):
        if package == prefix or package.startswith(prefix + "."):
            rest = package[len(prefix):].lstrip(".")
            return REPO_ROOT / folder / Path(*rest.split(".")) if rest else REPO_ROOT / folder
    raise AssertionError(f"{package} is not under any package-dir mapping")


def _source_modules() -> list[str]:
    """Every segloop module found on disk under the mapped folders."""
    modules = []
    for prefix, folder in PACKAGE_DIR.items():
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            relative = path.relative_to(REPO_ROOT / folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            modules.append(".".join([prefix, *parts]))
    return sorted(set(modules))


def test_stdlib_names_are_not_shadowed_from_repo_root() -> None:
    """`import platform, selectors, subprocess` at the repo root gets the standard library."""
    code = ("import platform, selectors, subprocess, sys; print(platform.__file__); print(selectors.__file__); "
            "print(platform.system())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    platform_file, selectors_file, system = out.stdout.splitlines()
    stdlib = Path(subprocess.__file__).parent
    assert Path(platform_file).parent == stdlib
    assert Path(selectors_file).parent == stdlib
    assert system


def test_stdlib_named_folders_have_no_init() -> None:
    """platform/ and selectors/ must never become importable top-level packages."""
    assert not (REPO_ROOT / "platform" / "__init__.py").exists()
    assert not (REPO_ROOT / "selectors" / "__init__.py").exists()


def test_every_folder_with_modules_is_listed_in_pyproject() -> None:
    """A new subpackage that is not listed would be missing from the wheel."""
    listed = {_folder_of(p).resolve() for p in PACKAGES}
    folders = set()
    for folder in PACKAGE_DIR.values():
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                folders.add(path.parent.resolve())
    assert folders - listed == set()


@pytest.mark.parametrize("module", _source_modules())
def test_every_module_imports(module: str) -> None:
    """Each segloop.* module imports after the editable install."""
    if module.startswith("segloop.migrations.") and module != "segloop.migrations.versions":
        pytest.skip("Alembic scripts run inside an Alembic context")
    importlib.import_module(module)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from the working tree."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO_ROOT)], check=True, capture_output=True, text=True)
    return next(out.glob("segloop-*.whl"))


def test_wheel_contains_every_module_and_the_migrations(wheel: Path) -> None:
    """Every module on disk and the Alembic files are in the wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in _source_modules():
        as_file = module.replace(".", "/") + ".py"
        as_package = module.replace(".", "/") + "/__init__.py"
        if module in ("segloop.platform", "segloop.selectors"):
            assert not any(n == as_package for n in names), f"{as_package} must not exist"
            continue
        assert as_file in names or as_package in names, f"{module} missing from {wheel.name}"
    assert "segloop/migrations/script.py.mako" in names
    assert any(n.startswith("segloop/migrations/versions/0001") for n in names)
    assert not any(n.startswith(("platform/", "selectors/")) for n in names)


def test_wheel_installs_and_migrates_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    """Installed from the wheel alone (editable finder removed), the CLI migrates a fresh database."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    code = (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()];"
        "sys.path_hooks[:] = [h for h in sys.path_hooks if 'editable' not in repr(h).lower()];"
        "sys.path_importer_cache.clear();"
        f"sys.path.insert(0, {str(target)!r});"
        "import segloop.platform.cli as cli, segloop.migrations as m;"
        "assert cli.__file__.startswith(sys.path[0]), cli.__file__;"
        "from segloop.platform.db.migrate import upgrade, current_revision;"
        "from segloop.platform.db.engine import make_engine;"
        f"e = make_engine('sqlite:///{tmp_path / 'w.db'}'); upgrade(e); print(current_revision(e))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0001" or out.stdout.strip().startswith("0")
