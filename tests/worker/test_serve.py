"""The worker process outlives a fatal worker error: rebuilt with backoff, it gives up only when
every rebuild fails again.

A real fault from the real dev server: a worker whose namespace does not exist fails at start
(``NotFound``), as a poll does against a frontend that answers before its namespace registry is
loaded. Registering the namespace while the process waits lets the next rebuild serve.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio import workflow
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from fleetway.activities.errors import WorkerFailedError
from fleetway.worker.config.client import connect
from fleetway.worker.config.settings import TemporalConfig
from fleetway.worker.dev.stack import TemporalDevServer
from fleetway.worker.process.serve import serve

pytestmark = pytest.mark.fast


@workflow.defn(sandboxed=False)
class Answer:
    @workflow.run
    async def run(self) -> str:
        return "served"


async def _in(temporal_server: TemporalDevServer, namespace: str) -> tuple[Client, Worker]:
    client = await connect(TemporalConfig(address=temporal_server.address, namespace=namespace))
    return client, Worker(client, task_queue=f"serve-{uuid.uuid4().hex[:8]}", workflows=[Answer])


async def test_a_worker_that_keeps_failing_gives_up_naming_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It fails at start (no such namespace); its server then stops, so each rebuild fails to connect."""
    server = TemporalDevServer()  # its own: this test stops it
    server.start()
    try:
        _, worker = await _in(server, f"missing-{uuid.uuid4().hex[:8]}")
        with (
            caplog.at_level(logging.ERROR, logger="fleetway.worker.process.serve"),
            pytest.raises(WorkerFailedError) as raised,
        ):
            serving = asyncio.create_task(serve(worker, asyncio.Event(), give_up_after=3))
            for _ in range(400):  # its first failure, while the server still answers
                if any(r.name == "fleetway.worker.process.serve" for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(server.stop)
            await asyncio.wait_for(serving, timeout=60)
    finally:
        server.stop()
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("worker failed")]
    assert len(said) == 2 and said[0].endswith("rebuilding it in 1s") and said[1].endswith("in 2s")
    assert "Namespace missing-" in said[0] and "not found" in said[0]
    assert str(raised.value).startswith(
        "the worker failed 3 times in a row; last: RuntimeError: Failed client connect"
    )


async def test_a_failed_worker_is_rebuilt_and_serves_once_its_namespace_answers(
    temporal_server: TemporalDevServer, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    namespace = f"late-{uuid.uuid4().hex[:8]}"
    late_client, worker = await _in(temporal_server, namespace)
    stop = asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="fleetway.worker.process.serve"):
        serving = asyncio.create_task(serve(worker, stop, give_up_after=30, max_delay_s=2))
        try:
            for _ in range(100):  # the first start fails before the namespace exists
                if any(r.getMessage().startswith("worker failed") for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            await client.workflow_service.register_namespace(
                RegisterNamespaceRequest(
                    namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)
                )
            )
            for _ in range(120):  # the frontend learns of a new namespace within its refresh
                try:
                    handle = await late_client.start_workflow(
                        Answer.run,
                        id=f"served-{uuid.uuid4().hex[:8]}",
                        task_queue=worker.task_queue,
                        execution_timeout=timedelta(seconds=90),
                    )
                    break
                except RPCError as err:
                    assert err.status is RPCStatusCode.NOT_FOUND, err
                    await asyncio.sleep(0.5)
            answer = await handle.result()
        finally:
            stop.set()
            await asyncio.wait_for(serving, timeout=30)
    assert answer == "served"
    assert any("not found" in r.getMessage().lower() for r in caplog.records)
