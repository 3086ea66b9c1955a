"""`--diff`: the replayed transitions against what `site-events` recorded."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from sitewatch.streams import records

from .feed import sort_transitions


class Mismatch(enum.StrEnum):
    MISSING = "missing"  # recorded, not reproduced
    EXTRA = "extra"  # reproduced, never recorded
    DIFFERENT = "different"


@dataclass
class DiffLine:
    kind: Mismatch
    transition_id: str
    text: str


def diff(
    recorded: Sequence[records.Transition], replayed: Sequence[records.Transition]
) -> list[DiffLine]:
    """Every mismatch by transition_id; field-by-field for ids in both."""
    rec = {t.transition_id: t for t in recorded}
    rep = {t.transition_id: t for t in replayed}
    lines: list[DiffLine] = []

    def brief(t: records.Transition) -> str:
        return f"site={t.site_id} at={t.at} reason={t.reason.value} event={t.event_id} seq={t.seq}"

    for t in sort_transitions(list(rec.values()) + [r for k, r in rep.items() if k not in rec]):
        tid = t.transition_id
        if tid not in rep:
            lines.append(DiffLine(Mismatch.MISSING, tid, f"missing {tid} {brief(t)}"))
        elif tid not in rec:
            lines.append(DiffLine(Mismatch.EXTRA, tid, f"extra {tid} {brief(t)}"))
        else:
            a = msgspec.to_builtins(rec[tid])
            b = msgspec.to_builtins(rep[tid])
            for name in sorted(set(a) | set(b)):
                if a.get(name) != b.get(name):
                    left = msgspec.json.encode(a.get(name), order="deterministic").decode()
                    right = msgspec.json.encode(b.get(name), order="deterministic").decode()
                    lines.append(
                        DiffLine(
                            Mismatch.DIFFERENT,
                            tid,
                            f"different {tid} {name}: recorded={left} replayed={right}",
                        )
                    )
    return lines
