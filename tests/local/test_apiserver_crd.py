"""CustomResourceDefinitions: registration, refusal of what is not emulated, schema handling."""

from __future__ import annotations

import copy
from typing import Any

from tests.local.conftest import GROUP, WIDGETS, Client, widget, widget_crd

CRDS = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions'


async def test_a_created_crd_is_established_and_served(client: Client) -> None:
    created = await client.install_widgets()
    conditions = {c['type']: c for c in created['status']['conditions']}
    assert conditions['NamesAccepted']['status'] == 'True'
    assert conditions['Established']['status'] == 'True'
    assert created['status']['acceptedNames'] == {
        'plural': 'widgets', 'singular': 'widget', 'kind': 'Widget', 'shortNames': ['wd'],
        'categories': ['kubeloop'], 'listKind': 'WidgetList'}
    assert created['status']['storedVersions'] == ['v1']

    resources = await client.ok('GET', f'/apis/{GROUP}/v1')
    assert resources['groupVersion'] == f'{GROUP}/v1'
    by_name = {r['name']: r for r in resources['resources']}
    assert by_name['widgets'] == {'name': 'widgets', 'singularName': 'widget', 'namespaced': True,
                                  'kind': 'Widget', 'verbs': ['create', 'delete', 'deletecollection', 'get',
                                                              'list', 'patch', 'update', 'watch'],
                                  'shortNames': ['wd'], 'categories': ['kubeloop']}
    assert by_name['widgets/status']['verbs'] == ['get', 'patch', 'update']
    groups = await client.ok('GET', '/apis')
    assert GROUP in [group['name'] for group in groups['groups']]
    assert (await client.post(WIDGETS, widget('w'))).status == 201


async def test_a_cluster_scoped_crd_with_several_versions_is_served_in_each(client: Client) -> None:
    crd = widget_crd(scope='Cluster')
    v2 = copy.deepcopy(crd['spec']['versions'][0])
    v2.update(name='v2', storage=False)
    crd['spec']['versions'].append(v2)
    await client.install_widgets(crd)
    created = await client.ok('POST', f'/apis/{GROUP}/v1/widgets', widget('w'))
    assert 'namespace' not in created['metadata']
    as_v2 = await client.ok('GET', f'/apis/{GROUP}/v2/widgets/w')
    assert as_v2['apiVersion'] == f'{GROUP}/v2' and as_v2['metadata']['uid'] == created['metadata']['uid']
    group = await client.ok('GET', f'/apis/{GROUP}')
    assert group['preferredVersion']['version'] == 'v2'


async def test_crds_using_what_is_not_emulated_are_refused(client: Client) -> None:
    cel = widget_crd()
    cel['spec']['versions'][0]['schema']['openAPIV3Schema']['properties']['spec']['x-kubernetes-validations'] = [
        {'rule': 'self.size > 0'}]
    webhook = widget_crd(conversion={'strategy': 'Webhook', 'webhook': {'conversionReviewVersions': ['v1']}})
    different = widget_crd()
    v2 = copy.deepcopy(different['spec']['versions'][0])
    v2.update(name='v2', storage=False)
    v2['schema']['openAPIV3Schema']['properties']['spec']['properties']['extra'] = {'type': 'string'}
    different['spec']['versions'].append(v2)
    not_structural = widget_crd()
    del not_structural['spec']['versions'][0]['schema']['openAPIV3Schema']['properties']['spec']['type']

    for crd, expected in [(cel, 'CEL validation rules'), (webhook, 'conversion webhooks are not emulated'),
                          (different, 'served versions with different schemas'),
                          (not_structural, 'must not be empty for specified object fields')]:
        reply = await client.post(CRDS, crd)
        assert reply.status == 422, reply
        assert reply.body['reason'] == 'Invalid' and expected in reply.body['message'], reply
    assert (await client.get(WIDGETS)).status == 404


async def test_an_invalid_custom_resource_is_refused_naming_the_field(client: Client) -> None:
    await client.install_widgets()
    reply = await client.post(WIDGETS, widget('w', size=0))
    assert reply.status == 422
    assert reply.body['message'] == ('Widget.test.kubeloop.dev "w" is invalid: spec.size: Invalid value: 0: '
                                     'spec.size in body should be greater than or equal to 1')
    assert reply.body['details'] == {
        'name': 'w', 'group': GROUP, 'kind': 'Widget',
        'causes': [{'reason': 'FieldValueInvalid', 'field': 'spec.size',
                    'message': 'Invalid value: 0: spec.size in body should be greater than or equal to 1'}]}
    several = await client.post(WIDGETS, {**widget('w'), 'spec': {'color': 'green'}})
    assert several.status == 422
    assert {cause['field'] for cause in several.body['details']['causes']} == {'spec.size', 'spec.color'}


async def test_custom_resources_are_defaulted_and_pruned(client: Client) -> None:
    await client.install_widgets()
    created = await client.ok('POST', WIDGETS, {**widget('w', size=2), 'spec': {'size': 2, 'foo': 'bar'},
                                                'extra': 1})
    assert created['spec'] == {'size': 2, 'color': 'blue'}
    assert 'extra' not in created
    patched = await client.ok('PATCH', f'{WIDGETS}/w', {'spec': {'size': 3, 'bar': 1}},
                              content_type='application/merge-patch+json')
    assert patched['spec'] == {'size': 3, 'color': 'blue'}


async def test_field_validation_strict_warn_and_ignore(client: Client) -> None:
    await client.install_widgets()
    unknown = {**widget('w'), 'spec': {'size': 1, 'foo': 1}}
    strict = await client.post(WIDGETS, unknown, params={'fieldValidation': 'Strict'})
    assert strict.status == 400
    assert strict.body['message'] == ('Widget in version "v1" cannot be handled as a Widget: strict decoding '
                                      'error: unknown field "spec.foo"')
    warned = await client.post(WIDGETS, unknown, params={'fieldValidation': 'Warn'})
    assert warned.status == 201 and warned.headers.getall('Warning') == ['299 - "unknown field \\"spec.foo\\""']
    ignored = await client.post(WIDGETS, {**unknown, 'metadata': {'name': 'v'}}, params={'fieldValidation': 'Ignore'})
    assert ignored.status == 201 and 'Warning' not in ignored.headers
    assert ignored.body['spec'] == {'size': 1, 'color': 'blue'}


async def test_deleting_a_crd_deletes_its_objects_then_stops_serving(client: Client) -> None:
    await client.install_widgets()
    await client.ok('POST', WIDGETS, widget('a'))
    await client.ok('POST', WIDGETS, {**widget('held'), 'metadata': {'name': 'held', 'finalizers': ['x.io/f']}})
    deleting = await client.ok('DELETE', f'{CRDS}/widgets.{GROUP}')
    assert deleting['metadata']['deletionTimestamp']
    await client.eventually(f'{WIDGETS}/a', lambda r: r.status == 404, what='the widget deleted')
    crd = await client.eventually(f'{CRDS}/widgets.{GROUP}', lambda r: any(
        c['type'] == 'Terminating' for c in r.body['status']['conditions']), what='the CRD terminating')
    assert crd.status == 200
    refused = await client.post(WIDGETS, widget('late'))
    assert refused.status == 405
    await client.ok('PATCH', f'{WIDGETS}/held', {'metadata': {'finalizers': None}},
                    content_type='application/merge-patch+json')
    await client.eventually(f'{CRDS}/widgets.{GROUP}', lambda r: r.status == 404, what='the CRD gone')
    gone: Any = await client.get(WIDGETS)
    assert gone.status == 404 and gone.body['reason'] == 'NotFound'
    assert (await client.get(f'/apis/{GROUP}/v1')).status == 404


async def test_the_group_scope_and_plural_of_a_crd_are_immutable(client: Client) -> None:
    crd = await client.install_widgets()
    changed = {**crd, 'spec': {**crd['spec'], 'scope': 'Cluster'}}
    reply = await client.put(f'{CRDS}/widgets.{GROUP}', changed)
    assert reply.status == 422 and 'spec.scope: Invalid value: "Cluster": field is immutable' in reply.body['message']
