"""The gateway scenario's baseline: a bare FastAPI endpoint that only publishes to Kafka.

No authentication, no validation, no envelope, no dedup: the body (or each
element of a batch) goes to the topic with the same producer settings the
gateway uses (acks=all, no linger, idempotence as the gateway has it), and the
answer waits for the acknowledgements::

    CHOREO_KAFKA_BOOTSTRAP=127.0.0.1:9092 \
        python -m uvicorn choreokit.services.bench._bare_publisher:app --port 8090
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Request, Response

TOPIC = os.environ.get("BENCH_TOPIC", "orders")
BATCH = "application/cloudevents-batch+json"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One producer for the app's life."""
    producer = AIOKafkaProducer(
        bootstrap_servers=os.environ.get("CHOREO_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        acks="all",
        # As the gateway's producer resolves it on the engine measured (on for Apache Kafka).
        enable_idempotence=os.environ.get("BENCH_IDEMPOTENT") == "1",
        linger_ms=0,
    )
    await producer.start()
    app.state.producer = producer
    try:
        yield
    finally:
        await producer.stop()


app = FastAPI(lifespan=lifespan)


@app.post("/events")
async def publish(request: Request) -> Response:
    """Send the body (or each element of a batch) and answer once the broker took it all."""
    body = await request.body()
    producer: AIOKafkaProducer = request.app.state.producer
    if request.headers.get("content-type") == BATCH:
        values = [json.dumps(element).encode() for element in json.loads(body)]
    else:
        values = [body]
    futures = [await producer.send(TOPIC, value=value) for value in values]
    for future in futures:
        await future
    return Response(status_code=202)
