"""The fan-out handlers' one loop: enqueue what is due a page per transaction, so a big batch
never holds one huge transaction, until a page comes back short."""

from __future__ import annotations

from typing import Callable, Sized

from sqlalchemy.orm import Session

from shared.db import Database


def fan_out_pages(database: Database, enqueue_page: Callable[[Session, int], Sized], page: int) -> int:
    """Call `enqueue_page(session, limit)` in a transaction of its own until a page is short;
    returns how many it enqueued in all. A page must take what it enqueues out of the next
    page's reach (mark it, lock it, move a cursor), or this never ends."""
    total = 0
    while True:
        with database.session() as session:
            done = len(enqueue_page(session, page))
        total += done
        if done < page:
            return total
