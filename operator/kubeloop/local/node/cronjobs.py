"""CronJobs (batch/v1): schedules Jobs like kube-controller-manager's CronJob controller.

Work in progress: the full controller replaces this minimal version shortly.
"""

from __future__ import annotations

import asyncio

from kubeloop.local.node.client import NodeClient
from kubeloop.local.node.settings import NodeSettings


class CronJobController:
    """Constructed by the node's main with its client and settings; `run` runs until cancelled."""

    def __init__(self, client: NodeClient, settings: NodeSettings) -> None:
        self.client = client
        self.settings = settings

    async def run(self) -> None:
        await asyncio.Event().wait()
