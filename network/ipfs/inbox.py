"""A subscription's inbox: messages by sender, served in turn, bounded in bytes.

Each subscription used to queue what the IPFS library delivered in one FIFO of up to
10,000 messages. A peer sending more than the node could take (a flood of valid
records, each costing ~1 ms to validate and store) filled it: every honest message
then waited behind the whole backlog, and the backlog (records messages of up to
16 KiB) was most of what a flood added to a node's memory (bench/swarm.py, hostile
scenario with fresh accounts: ~7 KB of RSS per record that arrived, where holding a
record costs 1.45 KB).

`FairInbox` keeps one FIFO per sender and serves the senders in turn, so a message
waits for at most one message of each other sender with something queued, however
much one of them sent. When the inbox is over its byte or message budget, it drops
the oldest message of the sender that holds the most bytes (the flooder, not the
peer that sent one message) and counts it against that sender. Gossip is best
effort: a record in a dropped message is still listed in its holders' heads and
arrives by head sync (docs/PROTOCOL.md §8).

Senders are pubsub authors (`PubsubMessage.from_peer`). Peer ids are free, so a
flood signed by many ids gets one turn per id; the byte budget bounds its memory
all the same. Not thread-safe: its subscription guards it with its own lock.
"""

from __future__ import annotations

import heapq
from collections import deque

from network.ipfs.base import PubsubMessage

# What one queued message costs besides its payload (its object, sender and topic
# references), so that a flood of empty messages is bounded too.
MESSAGE_OVERHEAD_BYTES = 200


def message_cost(message: PubsubMessage) -> int:
    """The bytes a queued message counts against the budget."""
    return len(message.data) + MESSAGE_OVERHEAD_BYTES


class FairInbox:
    """Per-sender FIFOs served round robin, at most `max_bytes` and `max_messages`.

    Args:
        max_bytes: the budget of queued bytes (`message_cost` each).
        max_messages: the budget of queued messages.
    """

    def __init__(self, max_bytes: int, max_messages: int) -> None:
        if max_bytes <= 0 or max_messages <= 0:
            raise ValueError("an inbox needs room for at least one message")
        self._max_bytes = max_bytes
        self._max_messages = max_messages
        self._queues: dict[str, deque[PubsubMessage]] = {}
        self._bytes_of: dict[str, int] = {}
        self._turns: deque[str] = deque()  # senders in serving order (may hold emptied ones)
        self._in_turns: set[str] = set()
        # (-bytes, sender) pushed whenever its bytes change; stale entries skipped when read
        self._heaviest: list[tuple[int, str]] = []
        self._bytes = 0
        self._count = 0
        self._dropped: dict[str, int] = {}

    def __len__(self) -> int:
        return self._count

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, message: PubsubMessage) -> None:
        """Queue `message`; drop the heaviest sender's oldest while over budget."""
        sender = message.from_peer
        cost = message_cost(message)
        self._queues.setdefault(sender, deque()).append(message)
        held = self._bytes_of.get(sender, 0) + cost
        self._bytes_of[sender] = held
        self._bytes += cost
        self._count += 1
        if sender not in self._in_turns:
            self._in_turns.add(sender)
            self._turns.append(sender)
        self._note_weight(sender, held)
        while self._bytes > self._max_bytes or self._count > self._max_messages:
            self._drop_from(self._heaviest_sender())

    def take(self) -> PubsubMessage | None:
        """The next message, the senders served in turn; None when empty."""
        while self._turns:
            sender = self._turns.popleft()
            queue = self._queues.get(sender)
            if not queue:  # (emptied by drops since its turn was queued)
                self._in_turns.discard(sender)
                continue
            message = queue.popleft()
            self._removed(sender, message)
            if queue:
                self._turns.append(sender)
            else:
                self._in_turns.discard(sender)
            return message
        return None

    def take_dropped(self) -> dict[str, int]:
        """Messages dropped per sender since the last call."""
        dropped, self._dropped = self._dropped, {}
        return dropped

    def _heaviest_sender(self) -> str:
        while True:
            negative, sender = self._heaviest[0]
            if self._bytes_of.get(sender, 0) == -negative:
                return sender
            heapq.heappop(self._heaviest)  # (that sender's bytes changed since)

    def _drop_from(self, sender: str) -> None:
        self._removed(sender, self._queues[sender].popleft())
        self._dropped[sender] = self._dropped.get(sender, 0) + 1

    def _removed(self, sender: str, message: PubsubMessage) -> None:
        """Account for `message`, just taken off `sender`'s queue."""
        cost = message_cost(message)
        self._bytes -= cost
        self._count -= 1
        held = self._bytes_of[sender] - cost
        if held:
            self._bytes_of[sender] = held
            self._note_weight(sender, held)
        else:
            del self._bytes_of[sender]
            del self._queues[sender]

    def _note_weight(self, sender: str, held: int) -> None:
        heapq.heappush(self._heaviest, (-held, sender))
        if len(self._heaviest) > 4 * len(self._bytes_of) + 64:  # (drop the stale entries)
            self._heaviest = [(-b, s) for s, b in self._bytes_of.items()]
            heapq.heapify(self._heaviest)
