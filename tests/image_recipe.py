"""The worker image's recipe, read from the Dockerfile and followed without a container engine.

No Docker engine runs here or in CI, so the tests do what the Dockerfile says instead: each stage
gets a folder standing for its filesystem root, its COPY lines copy from the build context (or an
earlier stage's folder), and its ``pip`` lines run as written, in one fresh virtual environment
standing for the image's Python. Lines that only a container needs (``apt-get``, ``useradd``) are
checked by ``tests/test_deployment.py``; the Maven line must be ``fleetway flyway install``'s and runs
with its output folder inside the stage's folder. Any other RUN fails the recipe here, so a step cannot
be added that the tests silently skip.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dockerfile_parse import DockerfileParser

from fleetway.worker.dev.stack import PROJECT_ROOT
from fleetway.worker.flyway.fetch import maven_fetch_argv

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
# RUN lines only a container needs; everything else must be a pip or mvn line this recipe runs.
CONTAINER_ONLY = ("apt-get ", "useradd ")


@dataclass(frozen=True)
class Copy:
    """One COPY: sources (in the context, or in stage ``from_stage``) to ``dest`` under the workdir."""

    sources: tuple[str, ...]
    dest: str
    from_stage: str = ""


@dataclass
class Stage:
    name: str
    image: str
    workdir: str = "/"
    copies: list[Copy] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    user: str = ""
    runs_after_user: int = 0  # RUN lines after USER: they would run without root


def read_stages(dockerfile: Path = DOCKERFILE) -> list[Stage]:
    """The Dockerfile's stages in order (the last is the image)."""
    parser = DockerfileParser(path=str(dockerfile))
    stages: list[Stage] = []
    for item in parser.structure:
        kind, value = item["instruction"], item["value"]
        if kind == "FROM":
            image, _, name = value.partition(" AS ")
            stages.append(Stage(name=name.strip(), image=image.strip()))
            continue
        if kind == "COMMENT" or not stages:
            continue
        stage = stages[-1]
        if kind == "WORKDIR":
            stage.workdir = value
        elif kind == "COPY":
            words = shlex.split(value)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            from_stage = next((f.removeprefix("--from=") for f in flags if f.startswith("--from=")), "")
            stage.copies.append(Copy(tuple(paths[:-1]), paths[-1], from_stage))
        elif kind == "RUN":
            stage.runs.append(" ".join(value.replace("\\\n", " ").split()))
            stage.runs_after_user += bool(stage.user)
        elif kind == "ENV":
            words = shlex.split(value.replace("\\\n", " "))
            stage.env.update(word.partition("=")[::2] for word in words)
        elif kind == "ENTRYPOINT":
            stage.entrypoint = json.loads(value)
        elif kind == "USER":
            stage.user = value
    return stages


def _under(root: Path, workdir: str, path: str) -> Path:
    """Where ``path`` (absolute, or relative to the workdir) lands inside a stage's root folder."""
    absolute = PurePosixPath(workdir) / path
    return root.joinpath(*absolute.parts[1:])


def follow_copies(stage: Stage, root: Path, *, context: Path, stage_roots: dict[str, Path]) -> None:
    """Copy what the stage's COPY lines copy, into ``root`` (the stage's filesystem)."""
    for copy in stage.copies:
        source_root = stage_roots[copy.from_stage] if copy.from_stage else context
        dest = _under(root, stage.workdir, copy.dest)
        into_folder = copy.dest.endswith("/") or len(copy.sources) > 1
        for source in copy.sources:
            found = (
                source_root.joinpath(*PurePosixPath(source).parts[1:])
                if source.startswith("/")
                else (source_root / source)
            )
            assert found.exists(), f"COPY {source}: not in the {copy.from_stage or 'build context'}"
            if found.is_dir():
                shutil.copytree(found, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target = dest / found.name if into_folder else dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(found, target)


def _mvn_line(line: str, root: Path) -> list[str]:
    """The stage's Maven line, which must be ``fleetway flyway install``'s, with its output under ``root``."""
    argv = shlex.split(line)
    out = next(a for a in argv if a.startswith("-DoutputDirectory=")).removeprefix("-DoutputDirectory=")
    pom = argv[argv.index("-f") + 1]
    assert argv == maven_fetch_argv(Path(pom), Path(out)), f"the image fetches Flyway its own way: {line!r}"
    return maven_fetch_argv(Path(pom), _under(root, "/", out))


def follow_runs(stage: Stage, root: Path, *, venv: Path) -> None:
    """Run the stage's pip and mvn lines as written (paths inside ``root``), ``venv`` as its Python."""
    cwd = _under(root, stage.workdir, ".")
    cwd.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    for line in stage.runs:
        if line.startswith(CONTAINER_ONLY):
            continue
        if line.startswith("mvn "):
            argv = _mvn_line(line, root)
        else:
            assert line.startswith("pip "), f"a RUN line the recipe cannot follow: {line!r}"
            argv = ["bash", "-euo", "pipefail", "-c", line]
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, f"{line}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


@dataclass(frozen=True)
class Image:
    """What following the recipe produced: the image's Python and its filesystem, and its last stage."""

    python: Path  # a venv: its bin/ holds the installed ``fleetway``
    root: Path
    stage: Stage

    @property
    def bin(self) -> Path:
        return self.python / "bin"

    def path(self) -> str:
        """A PATH with the image's ``bin`` first and no folder of the source tree (its .venv) on it."""
        rest = [p for p in os.environ["PATH"].split(":") if p and not Path(p).is_relative_to(PROJECT_ROOT)]
        return ":".join([str(self.bin), *rest])

    @property
    def wheels(self) -> list[Path]:
        """The wheels the image installed (copied into it from the wheel stage)."""
        return sorted(self.root.rglob("*.whl"))

    def env(self) -> dict[str, str]:
        """The image's ENV, an absolute path that exists in the image mapped into :attr:`root`."""
        return {
            name: str(_under(self.root, "/", value)) if value.startswith("/") else value
            for name, value in self.stage.env.items()
        }


def follow_recipe(work: Path) -> Image:
    """Follow every stage of the Dockerfile inside ``work``; return the image it describes."""
    venv = work / "image-python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    stage_roots: dict[str, Path] = {}
    stages = read_stages()
    for number, stage in enumerate(stages):
        root = work / f"stage-{number}-{stage.name or 'image'}"
        root.mkdir()
        follow_copies(stage, root, context=PROJECT_ROOT, stage_roots=stage_roots)
        follow_runs(stage, root, venv=venv)
        stage_roots[stage.name] = root
    return Image(python=venv, root=root, stage=stages[-1])
