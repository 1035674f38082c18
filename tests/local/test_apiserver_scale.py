"""The scale subresource of built-in workloads and of CRDs that declare it."""

from __future__ import annotations

from tests.local.conftest import GROUP, Client, widget, widget_crd

DEPLOYMENTS = '/apis/apps/v1/namespaces/default/deployments'
DEPLOYMENT = {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'd'},
              'spec': {'replicas': 1, 'selector': {'matchLabels': {'app': 'd'}},
                       'template': {'metadata': {'labels': {'app': 'd'}},
                                    'spec': {'containers': [{'name': 'c', 'image': 'nginx'}]}}}}


async def test_a_deployment_scales_through_its_scale_subresource(client: Client) -> None:
    created = await client.ok('POST', DEPLOYMENTS, DEPLOYMENT)
    scale = await client.ok('GET', f'{DEPLOYMENTS}/d/scale')
    assert scale['kind'] == 'Scale' and scale['apiVersion'] == 'autoscaling/v1'
    assert scale['spec'] == {'replicas': 1} and scale['status'] == {'replicas': 0, 'selector': 'app=d'}
    assert scale['metadata']['uid'] == created['metadata']['uid']

    patched = await client.ok('PATCH', f'{DEPLOYMENTS}/d/scale', {'spec': {'replicas': 3}},
                              content_type='application/merge-patch+json')
    assert patched['spec'] == {'replicas': 3}
    deployment = await client.ok('GET', f'{DEPLOYMENTS}/d')
    assert deployment['spec']['replicas'] == 3 and deployment['metadata']['generation'] == 2

    stale = await client.put(f'{DEPLOYMENTS}/d/scale', scale)  # carries the old resourceVersion
    assert stale.status == 409
    negative = await client.put(f'{DEPLOYMENTS}/d/scale', {'spec': {'replicas': -1}})
    assert negative.status == 422


async def test_a_crd_scale_subresource_uses_its_declared_paths(client: Client) -> None:
    crd = widget_crd()
    crd['spec']['versions'][0]['subresources']['scale'] = {
        'specReplicasPath': '.spec.size', 'statusReplicasPath': '.status.replicas'}
    await client.install_widgets(crd)
    widgets = f'/apis/{GROUP}/v1/namespaces/default/widgets'
    await client.ok('POST', widgets, widget('w', size=2))
    assert (await client.ok('GET', f'{widgets}/w/scale'))['spec'] == {'replicas': 2}
    await client.ok('PUT', f'{widgets}/w/scale', {'spec': {'replicas': 5}})
    assert (await client.ok('GET', f'{widgets}/w'))['spec']['size'] == 5
    configmaps = '/api/v1/namespaces/default/configmaps'
    await client.ok('POST', configmaps, {'metadata': {'name': 'c'}})
    assert (await client.get(f'{configmaps}/c/scale')).status == 404
