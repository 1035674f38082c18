"""Pod volumes on the local node, and how a container process finds them.

A local process shares the machine's filesystem, so a volume cannot be mounted at its
`mountPath`. The convention instead:

- every supported volume is a directory of the pod,
  `<state_dir>/pods/<pod uid>/volumes/<volume name>`, shared by the pod's containers and
  removed with the pod (as an emptyDir is);
- a container's env gets `KUBELOOP_VOLUME_<NAME>` (the volume name upper-cased, `-` and `.`
  as `_`) = the directory its mount points at (with `subPath`);
- in the container's env values, `command`, `args` and `workingDir`, every path under a
  `mountPath` is rewritten to the same path under that directory: `--out=/data/model.pt`
  becomes `--out=<pod>/volumes/data/model.pt`. Paths a program computes by itself are not
  rewritten: such programs should read `KUBELOOP_VOLUME_<NAME>`.

Supported: `emptyDir` (any `medium`; `sizeLimit` is not enforced), `configMap` and `secret`
(their keys written as files when the pod starts, `items` and `defaultMode` honoured; later
changes are not synced). Anything else (hostPath, persistentVolumeClaim, nfs, csi, ...) is
refused with `VolumeNotSupported`: the pod fails with a message naming the volume, rather
than writing to the machine's real paths. `readOnly` is not enforced.
"""

from __future__ import annotations

import base64
import binascii
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubeloop.local.node.containerenv import ContainerConfigError, ObjectLookup

SUPPORTED_VOLUME_TYPES = ('emptyDir', 'configMap', 'secret')
VOLUME_ENV_PREFIX = 'KUBELOOP_VOLUME_'
_VOLUME_SOURCE_KEYS = ('hostPath', 'persistentVolumeClaim', 'nfs', 'csi', 'ephemeral', 'projected',
                       'downwardAPI', 'iscsi', 'rbd', 'cephfs', 'glusterfs', 'fc', 'azureDisk', 'azureFile',
                       'awsElasticBlockStore', 'gcePersistentDisk', 'gitRepo', 'image', 'flexVolume',
                       'portworxVolume', 'scaleIO', 'storageos', 'quobyte', 'vsphereVolume', 'photonPersistentDisk',
                       'cinder', 'flocker')


class VolumeNotSupported(Exception):
    """A volume type the local node cannot emulate."""


@dataclass(frozen=True)
class Mount:
    """One volumeMount of a container: its path inside the container and the directory it is here."""

    volume: str
    mount_path: str
    host_path: Path


def unsupported_volume_problem(pod: Mapping[str, Any]) -> str | None:
    """A message naming the first volume the local node cannot emulate, if any."""
    for volume in (pod.get('spec') or {}).get('volumes') or []:
        kind = volume_type(volume)
        if kind not in SUPPORTED_VOLUME_TYPES:
            return (f'volume "{volume["name"]}" is of type {kind}, which the local node does not emulate '
                    f'(supported: {", ".join(SUPPORTED_VOLUME_TYPES)})')
    return None


def volume_type(volume: Mapping[str, Any]) -> str:
    for key in (*SUPPORTED_VOLUME_TYPES, *_VOLUME_SOURCE_KEYS):
        if key in volume:
            return key
    others = sorted(key for key in volume if key != 'name')
    return others[0] if others else 'emptyDir'  # a volume with no source is an emptyDir


def pod_volumes_dir(pod_dir: Path) -> Path:
    return pod_dir / 'volumes'


def prepare_volumes(pod: Mapping[str, Any], pod_dir: Path, secrets: ObjectLookup,
                    config_maps: ObjectLookup) -> dict[str, Path]:
    """Create each volume's directory (and the files of configMap/secret volumes): name -> directory.

    A missing ConfigMap or Secret that is not optional raises `ContainerConfigError` (the
    kubelet keeps the pod ContainerCreating and retries).
    """
    problem = unsupported_volume_problem(pod)
    if problem:
        raise VolumeNotSupported(problem)
    directories = {}
    for volume in (pod.get('spec') or {}).get('volumes') or []:
        directory = pod_volumes_dir(pod_dir) / volume['name']
        directory.mkdir(parents=True, exist_ok=True)
        if 'configMap' in volume:
            _write_keys(directory, volume['configMap'], config_maps, 'configmap', _config_map_files)
        elif 'secret' in volume:
            source = {**volume['secret'], 'name': volume['secret'].get('secretName')}
            _write_keys(directory, source, secrets, 'secret', _secret_files)
        directories[volume['name']] = directory
    return directories


def _write_keys(directory: Path, source: Mapping[str, Any], lookup: ObjectLookup, kind: str,
                files_of: Any) -> None:
    obj = lookup(str(source.get('name')))
    if obj is None:
        if source.get('optional'):
            return
        raise ContainerConfigError(f'{kind} "{source.get("name")}" not found')
    files: dict[str, bytes] = files_of(obj)
    items = source.get('items')
    selected = {item['path']: files[item['key']] for item in items if item['key'] in files} if items else files
    mode = int(source.get('defaultMode', 0o644))
    for relative, content in selected.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode & 0o777)


def _config_map_files(config_map: Mapping[str, Any]) -> dict[str, bytes]:
    files = {key: str(value).encode() for key, value in (config_map.get('data') or {}).items()}
    files.update({key: base64.b64decode(value) for key, value in (config_map.get('binaryData') or {}).items()})
    return files


def _secret_files(secret: Mapping[str, Any]) -> dict[str, bytes]:
    files = {}
    for key, value in (secret.get('data') or {}).items():
        try:
            files[key] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ContainerConfigError(f'secret key {key} is not base64: {exc}') from exc
    files.update({key: str(value).encode() for key, value in (secret.get('stringData') or {}).items()})
    return files


def container_mounts(container: Mapping[str, Any], volumes: Mapping[str, Path]) -> list[Mount]:
    """The container's volumeMounts as directories of the pod (`subPath` created on demand)."""
    mounts = []
    for mount in container.get('volumeMounts') or []:
        base = volumes.get(mount['name'])
        if base is None:
            raise ContainerConfigError(f'volume "{mount["name"]}" of mount {mount.get("mountPath")} is not '
                                       'declared in the pod')
        host = base / mount['subPath'] if mount.get('subPath') else base
        host.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(mount['name'], str(mount['mountPath']).rstrip('/') or '/', host))
    return mounts


def volume_env(mounts: Sequence[Mount]) -> dict[str, str]:
    """`KUBELOOP_VOLUME_<NAME>` for each mounted volume."""
    return {VOLUME_ENV_PREFIX + re.sub(r'[^A-Za-z0-9]', '_', mount.volume).upper(): str(mount.host_path)
            for mount in mounts}


def path_rewriter(mounts: Sequence[Mount]) -> PathRewriter:
    return PathRewriter(tuple(sorted(mounts, key=lambda mount: len(mount.mount_path), reverse=True)))


@dataclass(frozen=True)
class PathRewriter:
    """Rewrites container paths under mountPaths to the volumes' directories, in one pass."""

    mounts: tuple[Mount, ...]

    def __call__(self, text: str) -> str:
        usable = [mount for mount in self.mounts if mount.mount_path != '/']
        if not usable:
            return text
        # A mount path counts where it starts a path (not inside a longer name) and ends at a path end.
        alternatives = '|'.join(re.escape(mount.mount_path) for mount in usable)
        pattern = re.compile(rf'(?<![\w.~/-])({alternatives})(?=/|$|[^\w.-])')
        targets = {mount.mount_path: str(mount.host_path) for mount in usable}
        return pattern.sub(lambda match: targets[match[1]], text)


def remove_pod_dir(pod_dir: Path) -> None:
    shutil.rmtree(pod_dir, ignore_errors=True)
