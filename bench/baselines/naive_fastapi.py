"""The naive design the product grew from, as a baseline for bench/ingest_bench.py versus-naive.

FastAPI + Pydantic, one pika BlockingConnection per uvicorn worker, one publisher confirm
per request. Run: NAIVE_QUEUE=bench-naive uvicorn bench.baselines.naive_fastapi:app --workers 3
"""

import os
import uuid
from datetime import datetime

import pika
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, Field

QUEUE = os.environ.get("NAIVE_QUEUE", "bench-naive")
app = FastAPI()
channel = None


class Reading(BaseModel):
    metric: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    value: float
    unit: str = Field(max_length=16)
    measured_at: datetime


class Batch(BaseModel):
    readings: list[Reading] = Field(min_length=1, max_length=1000)


@app.post("/api/v1/ingest/", status_code=202)
async def ingest(batch: Batch, authorization: str = Header("")):
    global channel
    if authorization != f"Api-Key {os.environ.get('NAIVE_KEY', '')}":
        raise HTTPException(401)
    if channel is None:  # one connection per worker process, opened on first use
        channel = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1")).channel()
        channel.queue_declare(QUEUE, durable=True)
        channel.confirm_delivery()
    message_id = str(uuid.uuid4())
    try:
        channel.basic_publish(
            "",
            QUEUE,
            batch.model_dump_json(),
            pika.BasicProperties(delivery_mode=2, message_id=message_id),
            mandatory=True,
        )
    except pika.exceptions.AMQPError as error:
        raise HTTPException(503) from error
    return {"status": "queued", "id": message_id}
