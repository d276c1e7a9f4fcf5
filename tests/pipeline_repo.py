"""A throw-away copy of the project in its own git repo, where the real `dvc` runs on tiny params."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT

# Small enough that the whole pipeline runs in a minute or two on 2 CPU cores.
TINY_PARAMS = {
    "mnist": {"digits": [1, 5, 6]},
    "cae": {"epochs": 2, "n_examples": 4},
    "latent": {"manifold_size": 4, "scatter_points": 100},
    "seg": {"demo": {"image_size": 64, "n_train": 12, "n_val": 4, "n_test": 6}},
    # Whole 64-px scenes, no augmentation; the validation-IoU control (best epoch, schedule) stays on.
    "fcn": {"head_width": 16, "epochs": 2, "batch_size": 4, "patch_size": None, "augment": False},
    "evaluate": {"n_thresholds": 5},
    "overlays": {"examples": [0, 1], "n_best_worst": 2},
}


class PipelineRepo:
    def __init__(self, path: Path):
        self.path = path
        bin_dir = os.path.dirname(sys.executable)
        self.env = {**os.environ, "PYTHONPATH": str(path), "TF_CPP_MIN_LOG_LEVEL": "3",
                    "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}

    @classmethod
    def create(cls, path: Path, params_overrides=TINY_PARAMS) -> "PipelineRepo":
        """Copy the project's source files (what git would hand a fresh clone) and commit them.

        dvclive needs at least one commit ("Empty git repo" otherwise).
        """
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                                cwd=ROOT, capture_output=True, text=True, check=True).stdout
        for name in filter(None, listed.split("\0")):
            source = ROOT / name
            if source.is_file():
                (path / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, path / name)
        repo = cls(path)
        repo.update_params(params_overrides)
        repo.git("init", "-q")
        repo.git("add", "-A")
        repo.git("commit", "-q", "-m", "project copy")
        return repo

    @classmethod
    def clone(cls, source: "PipelineRepo", path: Path) -> "PipelineRepo":
        """`git clone` of `source`, as a teammate would get it: code and .dvc files, no data."""
        source.git("clone", "-q", str(source.path), str(path))
        return cls(path)

    def reset_to_head(self) -> None:
        """Back to the last commit: params and dvc.lock from git, outputs from DVC's cache."""
        self.git("checkout", "--", "params.yaml", "dvc.lock")
        self.dvc("checkout", "-q")

    def update_params(self, overrides: dict) -> None:
        params_file = self.path / "params.yaml"
        params = yaml.safe_load(params_file.read_text())
        _deep_update(params, overrides)
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))

    def dvc_yaml_plots(self) -> list:
        """The top-level `plots:` entries of the repo's dvc.yaml (a dict per chart, a path per image)."""
        return yaml.safe_load((self.path / "dvc.yaml").read_text())["plots"]

    def dvc_yaml_artifacts(self) -> dict:
        """The `artifacts:` entries of the repo's dvc.yaml (DVC's model registry)."""
        return yaml.safe_load((self.path / "dvc.yaml").read_text())["artifacts"]

    def git(self, *args: str) -> str:
        return self._run(["git", *args])

    def dvc(self, *args: str, check: bool = True) -> str:
        return self._run([sys.executable, "-m", "dvc", *args], check=check)

    def start_dvc(self, *args: str) -> subprocess.Popen:
        """Start `dvc` in its own process group, its output (unbuffered) readable line by line."""
        return subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=self.path,
                                env={**self.env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL the whole process group (dvc and the stage it runs), as a crash or OOM would."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=60)
        process.stdout.close()

    def _run(self, command, check=True) -> str:
        result = subprocess.run(command, cwd=self.path, env=self.env, capture_output=True, text=True,
                                timeout=1200)
        output = result.stdout + result.stderr
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{output[-6000:]}")
        return output

    def stages_run(self, output: str) -> list[str]:
        """Names of the stages a `dvc repro` output says it ran."""
        return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]

    def output_hashes(self) -> dict[str, str]:
        """sha256 of every file under data/prepared, models and reports."""
        hashes = {}
        for top in ("data/prepared", "models", "reports"):
            for file in sorted((self.path / top).rglob("*")):
                if file.is_file() and file.name != ".gitignore":
                    hashes[str(file.relative_to(self.path))] = hashlib.sha256(file.read_bytes()).hexdigest()
        return hashes


def _deep_update(target: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
