"""Check that our Python Kafka clients work against the broker of stack/up.sh.

Run this when bumping KAFKA_VERSION (or aiokafka / faust-streaming):

    python -m venv /tmp/kc && /tmp/kc/bin/pip install aiokafka==0.14.0 faust-streaming==0.15.3
    bash stack/up.sh kafka && /tmp/kc/bin/python stack/kafka/compat_check.py

Checks, each on fresh topics (the broker has auto.create.topics.enable=false):
  1. aiokafka: admin CreateTopics, idempotent producer with acks=all, consumer
     group fetch + offset commit.
  2. faust: a worker whose agent consumes one message (faust creates its own
     internal topics through CreateTopics).
  3. faust with processing_guarantee=exactly_once: the agent updates a table and
     the changelog record is visible to a read_committed consumer.
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

BOOTSTRAP = os.environ.get("PRIVACAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")

# A minimal faust app, run as a subprocess because faust owns its event loop.
FAUST_APP = """
import os, faust
app = faust.App(os.environ["APP_ID"], broker="kafka://" + os.environ["BOOTSTRAP"],
                store="memory://", web_enabled=False, topic_partitions=1,
                topic_replication_factor=1,
                processing_guarantee=os.environ["GUARANTEE"])
topic = app.topic(os.environ["TOPIC"], value_type=bytes, value_serializer="raw",
                  partitions=1, internal=True)
counts = app.Table("counts", default=int, partitions=1)

@app.agent(topic)
async def consume(stream):
    async for value in stream:
        counts["n"] += 1
        with open(os.environ["DONE_FILE"], "wb") as f:
            f.write(value)

if __name__ == "__main__":
    app.main()
"""


async def create_topic(name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def produce(topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def check_aiokafka() -> None:
    topic = f"compat-{uuid.uuid4().hex[:8]}"
    await create_topic(topic)
    await produce(topic, b"hello")
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"compat-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        msg = await asyncio.wait_for(consumer.getone(), 30)
        assert msg.value == b"hello", msg
        await consumer.commit()
        committed = await consumer.committed(TopicPartition(topic, 0))
        assert committed == 1, committed
    finally:
        await consumer.stop()
    print("ok: aiokafka create topic / idempotent produce acks=all / group consume + commit")


async def read_committed(topic: str) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5000)
        return [m.value for msgs in batches.values() for m in msgs]
    finally:
        await consumer.stop()


def check_faust(guarantee: str) -> None:
    app_id = f"compat-{guarantee}-{uuid.uuid4().hex[:6]}"
    topic = f"{app_id}-in"
    with tempfile.TemporaryDirectory() as tmp:
        app_file = os.path.join(tmp, "app.py")
        done_file = os.path.join(tmp, "done")
        with open(app_file, "w") as f:
            f.write(FAUST_APP)
        env = dict(
            os.environ,
            APP_ID=app_id,
            BOOTSTRAP=BOOTSTRAP,
            TOPIC=topic,
            GUARANTEE=guarantee,
            DONE_FILE=done_file,
        )
        asyncio.run(create_topic(topic))
        asyncio.run(produce(topic, b"faust-hello"))
        worker = subprocess.Popen(  # noqa: S603 (our own interpreter and generated file)
            [sys.executable, app_file, "worker", "-l", "warn"],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(120):  # up to 60 s for group join + recovery
                if os.path.exists(done_file) or worker.poll() is not None:
                    break
                time.sleep(0.5)
            # Let faust commit (its commit interval is 2.8 s), then stop it cleanly.
            time.sleep(4)
        finally:
            worker.terminate()
            out, _ = worker.communicate(timeout=30)
        if not os.path.exists(done_file):
            tail = out.decode()[-3000:]
            sys.exit(f"FAIL: faust ({guarantee}) agent got nothing; worker output:\n{tail}")
        with open(done_file, "rb") as f:
            assert f.read() == b"faust-hello"
    changelog = asyncio.run(read_committed(f"{app_id}-counts-changelog"))
    assert changelog == [b"1"], changelog
    print(f"ok: faust agent consumed one message, table changelog committed ({guarantee})")


if __name__ == "__main__":
    asyncio.run(check_aiokafka())
    check_faust("at_least_once")
    check_faust("exactly_once")
    print("all Kafka client compatibility checks passed")
