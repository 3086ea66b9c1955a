"""Liberal reading of records: a strict decoder first, a lenient second pass only for a
record the strict one refuses (`records` module docstring says what is forgiven)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec
import msgspec.inspect as mi

T = TypeVar("T")

#: record type -> what completes its raw form before validation (at any depth)
Fixups = Mapping[type, Callable[[dict[str, Any]], None]]


class Reader(Generic[T]):
    """Decodes one topic's records, liberally (module docstring).

    Our own records, and most others, take the strict decoder in one pass. Only a
    record it refuses is decoded again to plain JSON, cleaned up (`_lenient`) and
    validated by `msgspec.convert`, so leniency costs nothing on the common path and
    the error of a record that is invalid either way names the field at fault.
    """

    __slots__ = ("_finish", "_fixups", "_info", "_strict", "_type")

    def __init__(self, type_: Any, fixups: Fixups, finish: Callable[[T], T] | None = None) -> None:
        self._type = type_
        self._fixups = fixups
        self._strict: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)
        self._info = mi.type_info(type_)
        #: completes a decoded record from its other fields (both paths)
        self._finish = finish

    def decode(self, data: bytes | str) -> T:
        try:
            rec = self._strict.decode(data)
        except msgspec.ValidationError:
            return self.convert(msgspec.json.decode(data))
        return rec if self._finish is None else self._finish(rec)

    def convert(self, raw: Any) -> T:
        """Validate an already decoded JSON value (e.g. a `sites` record edited in place)."""
        rec: T = msgspec.convert(_lenient(raw, self._info, self._fixups), self._type)
        return rec if self._finish is None else self._finish(rec)


def _accepts_null(node: mi.Type) -> bool:
    if isinstance(node, mi.Metadata):
        node = node.type
    if isinstance(node, mi.NoneType):
        return True
    return isinstance(node, mi.UnionType) and any(_accepts_null(t) for t in node.types)


def _lenient(value: Any, node: mi.Type, fixups: Fixups) -> Any:
    """`value` with what a liberal reader forgives made explicit (see `Reader`)."""
    if isinstance(node, mi.Metadata):
        node = node.type
    if isinstance(node, mi.StructType):
        return _lenient_struct(value, node, fixups) if isinstance(value, dict) else value
    if isinstance(node, mi.UnionType):
        structs = [t for t in node.types if isinstance(t, mi.StructType)]
        if isinstance(value, dict) and structs:
            for st in structs:  # a tagged union: the member its tag names
                if st.tag_field is None or value.get(st.tag_field) == st.tag:
                    return _lenient_struct(value, st, fixups)
            return value
        lists = [t for t in node.types if isinstance(t, mi.ListType)]
        if isinstance(value, list) and lists:
            return _lenient(value, lists[0], fixups)
        return value
    if isinstance(node, mi.ListType) and isinstance(value, list):
        return [_lenient(v, node.item_type, fixups) for v in value]
    return value


def _lenient_struct(value: dict[str, Any], node: mi.StructType, fixups: Fixups) -> dict[str, Any]:
    out = dict(value)
    for f in node.fields:
        name = f.encode_name
        if name not in out:
            continue
        if out[name] is None:
            if not f.required and not _accepts_null(f.type):
                del out[name]  # null means "not given": the default applies
        else:
            out[name] = _lenient(out[name], f.type, fixups)
    fixup = fixups.get(node.cls)
    if fixup is not None:
        fixup(out)
    return out
