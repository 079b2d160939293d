"""Offline "fresh machine" virtual environments for tests: torch, transformers & co., but not some packages.

No network and no pip: the new venv is created ``--without-pip`` from the base interpreter, and a single
``.pth`` file in its site-packages lists directories of *symlinks* to every entry of the current
interpreter's site-packages, except the hidden packages (their package folder or module, their
``*.dist-info`` / ``*.egg-info`` / ``*.egg-link``, editable-install finders) and every ``.pth`` file.

Directories listed in a ``.pth`` file are added to ``sys.path`` but their own ``.pth`` files are not
processed, and we link none anyway, so an editable install (``__editable__.*.pth`` finder hooks or a
legacy path ``.pth``) cannot leak in either. The price is that no other package's ``.pth`` hook runs
in the new venv (e.g. setuptools' ``distutils-precedence.pth``); torch and transformers need none.
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import venv
from collections.abc import Iterable
from pathlib import Path


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def is_hidden_entry(name: str, hidden: Iterable[str]) -> bool:
    """Whether a site-packages entry must not be linked: any ``.pth`` file, or anything naming a hidden package.

    Matching is on the normalised name (``-``/``.``/``_`` equivalent, case-insensitive), so it catches the
    package folder ``seqbert/``, a module ``seqbert.py`` or extension ``seqbert.cpython-*.so``,
    ``seqbert-0.1.0.dist-info``, ``seqbert.egg-info``, ``seqbert.egg-link`` and the editable finders
    ``__editable___seqbert_0_1_0_finder.py`` / ``__editable__.seqbert-0.1.0.pth``.
    """
    if name.endswith(".pth"):
        return True
    normalised = _normalise(name)
    return any(_normalise(package) in normalised for package in hidden)


def source_site_dirs(required: Iterable[str] = ("torch", "transformers")) -> list[Path]:
    """The current interpreter's site-packages directories, plus wherever the ``required`` packages live.

    Only site directories, never arbitrary ``sys.path`` entries: pytest may have put the repository root
    (with its ``seqbert/`` folder) on ``sys.path``.
    """
    candidates = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        candidates.append(site.getusersitepackages())
    for module_name in required:
        module = __import__(module_name)
        candidates.append(str(Path(module.__file__).resolve().parent.parent))
    dirs: list[Path] = []
    for candidate in candidates:
        path = Path(candidate).resolve()
        if path.is_dir() and path not in dirs:
            dirs.append(path)
    return dirs


def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def create_venv_without(
    env_dir: Path,
    hidden: Iterable[str] = ("seqbert",),
    required: Iterable[str] = ("torch", "transformers"),
) -> Path:
    """Create a venv at ``env_dir`` that imports everything this interpreter can, except ``hidden`` packages.

    Returns the new venv's python executable. Raises ``OSError`` where symlinks cannot be created.
    """
    hidden = tuple(hidden)
    env_dir = Path(env_dir)
    # EnvBuilder bases the venv on sys._base_executable even when run from inside a venv.
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(env_dir)
    python = venv_python(env_dir)
    purelib = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
        env=clean_env(),
    ).stdout.strip()

    link_dirs = []
    for index, source in enumerate(source_site_dirs(required)):
        link_dir = env_dir / f"linked-site-{index}"
        link_dir.mkdir()
        for entry in sorted(source.iterdir()):
            if entry.name == "__pycache__" or is_hidden_entry(entry.name, hidden):
                continue
            (link_dir / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
        link_dirs.append(link_dir)
    (Path(purelib) / "_linked_site_packages.pth").write_text(
        "".join(f"{link_dir}\n" for link_dir in link_dirs), encoding="utf-8"
    )
    return python


def clean_env(**overrides: str) -> dict[str, str]:
    """``os.environ`` without ``PYTHON*`` variables (PYTHONPATH, PYTHONHOME, ...) and venv markers, plus overrides."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTHON") and key not in {"VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}
    }
    env.update(overrides)
    return env


__all__ = ["clean_env", "create_venv_without", "is_hidden_entry", "source_site_dirs", "venv_python"]
