"""Print a customer's touches as they happen: a minimal integrator's subscriber.

It reads crm.interactions.v1 with a plain Kafka client (aiokafka) and parses each message
with the CloudEvents SDK, so nothing from this repository is needed:

    pip install aiokafka "cloudevents>=2"
    python examples/subscriber.py --bootstrap localhost:9092 [--customer <id>] [--from-beginning]

Delivery is at least once: the same event may arrive twice (after a rebalance or a replay),
so a real integration deduplicates on the CloudEvent id, as this script does.
"""

import argparse
import asyncio
import json

from aiokafka import AIOKafkaConsumer
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

TOPIC = "crm.interactions.v1"


async def subscribe(args: argparse.Namespace) -> None:
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,  # None: no committed offsets, read from where --from-beginning says
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    print(f"listening on {TOPIC}", flush=True)  # partitions are assigned: safe to write now
    seen: set[str] = set()
    printed = 0
    try:
        async for message in consumer:
            if args.customer and message.key != args.customer.encode():
                continue  # the key is the customer id: no need to parse the value
            event = from_structured(
                KafkaMessage(headers=dict(message.headers), key=message.key, value=message.value),
                JSONFormat(),
            )
            if event.get_id() in seen:
                continue
            seen.add(event.get_id())
            touch = event.get_data()
            if isinstance(touch, (bytes, str)):
                touch = json.loads(touch)
            print(
                f"{touch['occurred_at']}  {touch['customer_id']}  {touch['department']:<9} "
                f"{touch['direction']:<8} {touch['channel']:<9} {touch['kind']}"
                f"  {touch.get('subject') or ''}  [{touch['interaction_id']}]",
                flush=True,
            )
            printed += 1
            if args.max_messages and printed >= args.max_messages:
                return
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--customer", help="only this customer's touches")
    parser.add_argument("--group", help="a consumer group, to resume where it stopped")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--max-messages", type=int, default=0, help="stop after this many")
    asyncio.run(subscribe(parser.parse_args()))


if __name__ == "__main__":
    main()
