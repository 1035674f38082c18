"""Which images the local node can run, and the command line a container becomes.

There is no container runtime: a container runs as a local process when its image's
repository (the image reference without tag or digest) is a key of
`NodeSettings.image_entrypoints`, whatever the tag. The value is the image's entrypoint,
used as Docker uses ENTRYPOINT: `command` replaces it, `args` follow it. The program
names `python`/`python3` are this interpreter and `kubeloop` is this virtualenv's script,
so containers run kubeloop's own code; other programs are looked up on the node's PATH.

Any other image is refused with reason `ImageNotRunnableLocally` and a message that names
the image and says how to map it (`kubeloop local node --image REPO=COMMAND`): never a fake
success.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_NOT_RUNNABLE = 'ImageNotRunnableLocally'


class ImageNotRunnable(Exception):
    """The image has no local entrypoint."""


class ProgramNotFound(Exception):
    """The command names a program this machine does not have (the runtime's StartError)."""


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None
    digest: str | None


def parse_image(image: str) -> ImageRef:
    """Split `registry:5000/name:tag@sha256:...` into repository, tag and digest."""
    rest, _, digest = image.partition('@')
    slash = rest.rfind('/')
    colon = rest.rfind(':')
    if colon > slash:
        return ImageRef(rest[:colon], rest[colon + 1:], digest or None)
    return ImageRef(rest, None, digest or None)


def entrypoint_of(image: str, image_entrypoints: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The image's entrypoint, or `ImageNotRunnable` with a message saying how to map it."""
    repository = parse_image(image).repository
    if repository in image_entrypoints:
        return tuple(image_entrypoints[repository])
    known = ', '.join(sorted(image_entrypoints)) or 'none'
    raise ImageNotRunnable(
        f'image "{image}" cannot run on the local node: it runs only images whose repository is mapped to '
        f'a local command (mapped: {known}); map this one with '
        f'`kubeloop local node --image {repository}=COMMAND`')


def process_argv(image_entrypoint: Sequence[str], command: Sequence[str] | None,
                 args: Sequence[str] | None, path: str) -> list[str]:
    """The argv to execute: Docker's ENTRYPOINT/command and args rules, then program lookup."""
    argv = [*(command if command else image_entrypoint), *(args or [])]
    if not argv:
        raise ProgramNotFound('the container has no command and its image no entrypoint')
    return [local_program(argv[0], path), *argv[1:]]


def local_program(program: str, path: str) -> str:
    """`python` is this interpreter, `kubeloop` this virtualenv's script; others come from PATH."""
    if program in ('python', 'python3', Path(sys.executable).name):
        return sys.executable
    if program == 'kubeloop':
        script = Path(sys.executable).parent / 'kubeloop'
        if script.exists():
            return str(script)
    if os.sep in program:
        if os.access(program, os.X_OK):
            return program
        raise ProgramNotFound(f'exec: "{program}": stat {program}: no such file or directory')
    found = shutil.which(program, path=path)
    if found is None:
        raise ProgramNotFound(f'exec: "{program}": executable file not found in $PATH')
    return found
