"""What the built package carries: its license, its type marker and one version everywhere.

The wheel is built once per session as a user would (``pip wheel . --no-deps``, in an
isolated build environment from PyPI); its build log must hold no setuptools warning.
"""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest

from forecaster.version import __version__

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-w", str(out), "-v",
                           "--disable-pip-version-check"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = out.glob("forecaster-*.whl")
    return path, proc.stdout + proc.stderr


def wheel_metadata(path: Path):
    with zipfile.ZipFile(path) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode()), z.namelist()


def test_the_wheel_carries_the_type_marker_and_the_license(wheel):
    path, _ = wheel
    meta, names = wheel_metadata(path)
    assert "forecaster/py.typed" in names
    licenses = [n for n in names if re.fullmatch(r"forecaster-[^/]+\.dist-info/licenses/LICENSE", n)]
    assert licenses, names
    with zipfile.ZipFile(path) as z:
        assert z.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]


def test_the_build_gives_no_setuptools_warning(wheel):
    _, log = wheel
    assert not re.search(r"Setuptools\w*Warning|_DeprecatedConfig|is deprecated", log), log[-3000:]


def test_one_version_in_the_wheel_the_metadata_and_the_command(wheel):
    path, _ = wheel
    meta, _ = wheel_metadata(path)
    assert meta["Version"] == __version__
    assert path.name.startswith(f"forecaster-{__version__}-")
    shown = subprocess.run([sys.executable, "-m", "forecaster", "--version"], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert shown == f"forecaster, version {metadata.version('forecaster')}"
    assert metadata.version("forecaster") == __version__, "the installed metadata is stale: pip install -e . again"


def test_the_version_is_written_in_one_place():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', text, re.M)
    assert not re.search(r"^version\s*=", text.split("[tool.setuptools.dynamic]")[0], re.M)
    assert 'version = { attr = "forecaster.version.__version__" }' in text
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?", __version__)


def test_the_license_is_mit_with_its_copyright_line():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the forecaster authors" in text
    assert re.search(r'^license = "MIT"$', (ROOT / "pyproject.toml").read_text(), re.M)


def test_the_changelog_has_the_current_version_and_unreleased_first():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    names = [h[0] for h in headings]
    assert __version__ in names, f"CHANGELOG.md has no section ## [{__version__}]"
    assert all(date for name, date in headings if name != "Unreleased"), "a released version needs its date"
    if "Unreleased" in names:
        assert names.index("Unreleased") == 0
    dates = [date for _, date in headings if date]
    assert dates == sorted(dates, reverse=True), "newest first"
