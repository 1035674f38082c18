"""Discovery: /api, /apis, /version, content negotiation, and 404 for undeclared resources."""

from __future__ import annotations

from tests.local.conftest import Client, configmap

AGGREGATED = ('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,'
              'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json')


async def test_the_core_group_version_is_v1(client: Client) -> None:
    core = await client.ok('GET', '/api/v1')
    assert core['kind'] == 'APIResourceList' and core['groupVersion'] == 'v1'
    names = {resource['name'] for resource in core['resources']}
    assert {'configmaps', 'namespaces', 'pods', 'pods/status', 'events'} <= names
    versions = await client.ok('GET', '/api')
    assert versions['kind'] == 'APIVersions' and versions['versions'] == ['v1']


async def test_apis_lists_the_groups_with_their_preferred_versions(client: Client) -> None:
    groups = {group['name']: group for group in (await client.ok('GET', '/apis'))['groups']}
    assert {'apps', 'batch', 'apiextensions.k8s.io', 'events.k8s.io', 'coordination.k8s.io'} <= set(groups)
    assert groups['autoscaling']['preferredVersion'] == {'groupVersion': 'autoscaling/v2', 'version': 'v2'}
    assert 'metrics.k8s.io' not in groups  # no metrics server: `kubectl top` must say so
    apps = await client.ok('GET', '/apis/apps')
    assert apps['kind'] == 'APIGroup' and apps['versions'] == [{'groupVersion': 'apps/v1', 'version': 'v1'}]


async def test_the_version_endpoint_reports_kubernetes_1_37(client: Client) -> None:
    version = await client.ok('GET', '/version')
    assert (version['major'], version['minor']) == ('1', '37')


async def test_aggregated_discovery_falls_back_to_plain_json(client: Client) -> None:
    fallback = await client.get('/apis', headers={'Accept': AGGREGATED})
    assert fallback.status == 200 and fallback.body['kind'] == 'APIGroupList'
    assert fallback.headers['Content-Type'].startswith('application/json')
    only_aggregated = await client.get('/apis', headers={
        'Accept': 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList'})
    assert only_aggregated.status == 406 and only_aggregated.body['reason'] == 'NotAcceptable'
    protobuf_only = await client.get('/api/v1/namespaces', headers={'Accept': 'application/vnd.kubernetes.protobuf'})
    assert protobuf_only.status == 406


async def test_undeclared_resources_are_not_found_and_never_written(client: Client) -> None:
    for method, path in [('GET', '/apis/nowhere.io/v1/namespaces/default/things'),
                         ('POST', '/apis/nowhere.io/v1/namespaces/default/things'),
                         ('GET', '/api/v1/namespaces/default/nothings'),
                         ('GET', '/apis/nowhere.io/v1'), ('GET', '/apis/nowhere.io'), ('GET', '/nonsense')]:
        reply = await client.request(method, path, {'metadata': {'name': 'x'}} if method == 'POST' else None)
        assert reply.status == 404, (method, path, reply)
        assert reply.body['kind'] == 'Status' and reply.body['reason'] == 'NotFound'


async def test_verbs_a_resource_lacks_are_method_not_allowed(client: Client) -> None:
    reply = await client.post('/api/v1/componentstatuses', {'metadata': {'name': 'x'}})
    assert reply.status == 405 and reply.body['reason'] == 'MethodNotAllowed'
    protobuf = await client.post('/api/v1/namespaces/default/configmaps', b'\x00k8s',
                                 content_type='application/vnd.kubernetes.protobuf')
    assert protobuf.status == 415
    assert (await client.post('/api/v1/namespaces/default/configmaps', configmap('ok'))).status == 201
