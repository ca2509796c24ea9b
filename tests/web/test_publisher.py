"""The live view's bounded drop-oldest publisher: state first, no blocking, drops counted."""

from __future__ import annotations

import threading
import time

from meterbench.web import EventPublisher


def test_a_new_subscriber_first_gets_the_state_with_earlier_verdicts():
    publisher = EventPublisher(capacity=8)
    publisher.publish({"type": "state", "meter": "ZR-1", "point": "Q3"})
    publisher.publish({"type": "verdict", "point": "Q3", "error_pct": 0.4, "passed": True})
    publisher.publish({"type": "state", "point": "Q2"})
    subscription = publisher.subscribe()
    first = subscription.get(timeout_s=1)
    assert first == {
        "type": "state",
        "meter": "ZR-1",
        "point": "Q2",
        "verdicts": [{"type": "verdict", "point": "Q3", "error_pct": 0.4, "passed": True}],
    }
    publisher.publish({"type": "reading", "value_m3": 1.25})
    assert subscription.get(timeout_s=1) == {"type": "reading", "value_m3": 1.25}
    assert subscription.get(timeout_s=0.05) is None


def test_a_stalled_consumer_does_not_block_publish_and_counts_what_it_lost():
    publisher = EventPublisher(capacity=4)
    stalled = publisher.subscribe()  # never read until the end
    started = time.monotonic()
    for index in range(10_000):
        publisher.publish({"type": "reading", "index": index})
    assert time.monotonic() - started < 2.0
    assert stalled.dropped == 10_000 + 1 - 4  # the initial state event was dropped too
    assert publisher.drops() == [10_000 + 1 - 4] and publisher.published == 10_000
    assert [stalled.get(timeout_s=0)["index"] for _ in range(4)] == [9996, 9997, 9998, 9999]


def test_a_waiting_consumer_wakes_on_publish():
    publisher = EventPublisher()
    subscription = publisher.subscribe()
    subscription.get(timeout_s=0)
    got = []
    reader = threading.Thread(target=lambda: got.append(subscription.get(timeout_s=5)))
    reader.start()
    time.sleep(0.05)
    publisher.publish({"type": "warning", "message": "flow unstable"})
    reader.join(timeout=5)
    assert got == [{"type": "warning", "message": "flow unstable"}]
    publisher.unsubscribe(subscription)
    publisher.publish({"type": "warning", "message": "ignored"})
    assert subscription.get(timeout_s=0) is None
