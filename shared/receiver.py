"""The claim-and-retry loop every webhook receiver runs (docs/decisions/0002-delivery-state.md).

A delivery is read in one round trip (its claim, its device's documents and delivery state),
then written in one commit that claims it. The loop around those two steps is the same for
every vendor, so it lives here once:

- a claim found *done* is a repeat: the receiver's answer for a duplicate, nothing written;
- the commit's precondition failed (`StaleRead`: a concurrent copy or writer got in between,
  nothing written): read again, where the copy's claim is found; after `WRITE_ATTEMPTS` lost
  races, 503 with Retry-After (the vendor retries);
- the device is busy (`RetryLater`, nothing written; Smartcar's and TLINK's receivers never
  meet it: their pipeline runs hand a busy device's delivery off, ADR 0002): wait up to
  `BUSY_WAIT_SECONDS` in
  `BUSY_POLL_SECONDS` steps when the receiver says it is worth it (a copy of the delivery whose
  position is on its way usually ends within it), then answer 429 with Retry-After;
- anything else failed after the read: the delivery's own claim is released, so the vendor's
  retry is processed in full, and the answer is the error if it is the bridge's own (it says
  what to do), else 503 with Retry-After.

A receiver describes one delivery as a `Claimed`: how to read it, whether what was read is a
repeat, how to process it, whether a busy device is worth waiting for, how to release its claim.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from shared.errors import BridgeError, RetryLater, Unavailable
from shared.store import StaleRead

logger = logging.getLogger(__name__)

BUSY_WAIT_SECONDS = 1.0
BUSY_POLL_SECONDS = 0.1
# Reads and commits of one delivery losing races to other writers of its documents before it
# gives up; each lost race means a concurrent writer succeeded.
WRITE_ATTEMPTS = 5
UNAVAILABLE_RETRY_AFTER = 30

R = TypeVar("R")  # what one delivery reads
A = TypeVar("A")  # what the vendor is answered
A_co = TypeVar("A_co", covariant=True)


class Claimed(Protocol, Generic[R, A_co]):
    """One delivery as its receiver describes it to `receive_claimed`."""

    @property
    def name(self) -> str:
        """For messages and logs: "Smartcar delivery <eventId>"."""
        ...

    def read(self) -> R:
        """One round trip; raises what Firestore raised (nothing was written)."""
        ...

    def repeat(self, read: R) -> A_co | None:
        """The answer for a delivery found done already, or None to process it."""
        ...

    def process(self, read: R) -> A_co:
        """One commit (the claim, the records, the lease) and the pipeline."""
        ...

    def worth_waiting(self, read: R) -> bool:
        """Whether a busy device is worth a short wait (a copy's claim was found pending)."""
        ...

    def release(self) -> None:
        """Delete this delivery's own claim, if it wrote one."""
        ...


def receive_claimed(delivery: Claimed[R, A], *, sleep: Callable[[float], None] = time.sleep) -> A:
    """Run `delivery` through the loop in the module docstring; answers what the vendor gets."""
    waited, stale = 0.0, 0
    while True:
        read = delivery.read()
        repeat = delivery.repeat(read)
        if repeat is not None:
            logger.info("%s seen already", delivery.name)
            return repeat
        try:
            return delivery.process(read)
        except StaleRead:
            stale += 1  # nothing was written: read again (a copy's claim is found there)
            if stale >= WRITE_ATTEMPTS:
                raise Unavailable(
                    f"{delivery.name}: its documents kept changing; retry later",
                    retry_after=UNAVAILABLE_RETRY_AFTER,
                ) from None
        except Unavailable:
            delivery.release()
            raise
        except RetryLater:
            # The device's lease is held (raised before any write).
            if not delivery.worth_waiting(read) or waited >= BUSY_WAIT_SECONDS:
                raise
            sleep(BUSY_POLL_SECONDS)
            waited += BUSY_POLL_SECONDS
        except BridgeError:
            delivery.release()
            raise
        except Exception as exc:
            delivery.release()
            logger.exception("%s not stored or not delivered", delivery.name)
            raise Unavailable(
                f"{delivery.name} could not be stored or its position queued; retry later",
                retry_after=UNAVAILABLE_RETRY_AFTER,
            ) from exc
