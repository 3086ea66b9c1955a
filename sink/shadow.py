"""What the database does not show yet: the rows of batches folded but not committed.

Shadow mode (SITEWATCH_SINK_WRITES=0) never writes, so without this memory a
transition applied "in shadow" in one batch would be unknown to the next and every
later change of that event would look like a contradiction. The pipeline
(`pipeline.py`) folds batch N+1 while N is being written, over N's overlay.

The overlay is kept in step with the fold by construction: what it remembers is a
fold's `Changes` (`apply`), the rows `write.py` writes; what it lays over a load is
what those writes would have left in the tables (`lay_over`), ON DELETE CASCADE
included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sitewatch.streams.enums import SiteState

from .fold import Changes
from .projection import SiteTracker
from .rows import EventRow


@dataclass(slots=True)
class ShadowOverlay:
    """The state the folded batches leave behind. It grows with the events seen since
    start; shadow runs are meant to be bounded."""

    transition_ids: set[str] = field(default_factory=set)
    events: dict[str, EventRow] = field(default_factory=dict)
    open_by_site: dict[int, set[str]] = field(default_factory=dict)
    sites: dict[int, tuple[SiteState, datetime | None]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    #: events that went with their deleted site (what ON DELETE CASCADE would remove)
    gone_events: set[str] = field(default_factory=set)

    def lay_over(
        self,
        events: dict[str, EventRow],
        trackers: dict[int, SiteTracker],
        eids: Iterable[str],
        sites: Iterable[int],
    ) -> None:
        """Lay the overlay over what a load read: its events (`eids` by id, the open
        ones of `sites`) and the `trackers` of those sites. What it holds wins."""
        for eid in list(events):
            if eid in self.events:
                events[eid] = self.events[eid].copy()
            elif events[eid].site_id in self.deleted:
                del events[eid]  # cascaded away by a shadow delete
        for eid in eids:
            if eid in self.events:
                events[eid] = self.events[eid].copy()
        for sid in sites:
            for eid in self.open_by_site.get(sid, ()):
                events[eid] = self.events[eid].copy()
            if sid in self.sites:
                state, changed = self.sites[sid]
                trackers[sid] = SiteTracker(current_state=state, last_status_change=changed)

    def apply(self, changes: Changes) -> None:
        """Remember a fold's changes as if written. Call it after the rows are built:
        it takes the changed events over as they are (a later fold works on copies)."""
        for sid in changes.deleted:
            self.deleted.add(sid)
            self.sites[sid] = (SiteState.UP, None)
            for eid in self.open_by_site.pop(sid, set()):
                self.events.pop(eid, None)
                self.gone_events.add(eid)
            for eid in [k for k, v in self.events.items() if v.site_id == sid]:
                del self.events[eid]
                self.gone_events.add(eid)
        for ev in (*changes.updated, *changes.inserted):
            ev.in_db, ev.dirty = True, False
            self.events[ev.id] = ev
            opened = self.open_by_site.setdefault(ev.site_id, set())
            if ev.ended_at is None:
                opened.add(ev.id)
            else:
                opened.discard(ev.id)
        for sid, tracker in changes.sites.items():
            self.sites[sid] = (tracker.current_state, tracker.last_status_change)
        self.transition_ids.update(row[0] for row in changes.transitions)
