"""The one id module: its fast UUIDv5 is the standard library's."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from sitewatch.streams import ids


@given(st.text())
def test_uuid5_is_the_standard_uuid5_in_the_namespace(name: str) -> None:
    assert ids.uuid5(name) == str(uuid.uuid5(ids.ID_NAMESPACE, name))


def test_ids_of_distinct_kinds_differ() -> None:
    event = ids.event_id_for(1, "0|http|", 1000, "r1")
    assert len({event, ids.transition_id_for(event, 1), ids.request_id_for(event)}) == 3
    assert ids.delivery_id_for(1, event) != ids.delivery_id_for(2, event)
