"""The package installs as a package: its dependencies are requirements.txt's, and its console script
is the same command line as mnist_keras.py."""

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_ONLY = {"pytest", "pytest-timeout", "h5py", "selenium", "httpx"}  # pyproject's optional "test" extra


def _requirement_lines(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line]


def _name(requirement: str) -> str:
    for mark in "=<>!~[ ":
        requirement = requirement.split(mark, 1)[0]
    return requirement.lower()


def test_the_package_declares_the_pins_of_requirements_txt():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = _requirement_lines(REPO / "requirements.txt")
    assert sorted(project["dependencies"]) == sorted(r for r in pinned if _name(r) not in TEST_ONLY)
    assert sorted(project["optional-dependencies"]["test"]) == sorted(r for r in pinned if _name(r) in TEST_ONLY)


def test_the_console_script_runs_the_modes_like_mnist_keras_py(tmp_path):
    script = Path(sys.executable).parent / "mnist-folders"
    assert script.exists(), "install the package first: pip install -e . (make test does)"
    help_text = subprocess.run([script, "train", "--help"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert help_text.stdout.startswith("usage: mnist-folders --mode train")
    assert "--epochs" in help_text.stdout and "--watch" not in help_text.stdout  # train's settings only
    wrong = subprocess.run([script, "predict", "--resume"], cwd=tmp_path, capture_output=True, text=True)
    assert wrong.returncode == 2 and "--resume is read by --mode train, not predict" in wrong.stderr
    missing = subprocess.run([script, "--mode", "train", "--data-dir", str(tmp_path / "none")], cwd=tmp_path,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and len(missing.stderr.splitlines()) == 1
