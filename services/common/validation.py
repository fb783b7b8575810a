"""Contract validation driven by the `chatbot.options.v1.field` option of each field.

The same rules are enforced by the Node server from the same descriptors, so a frame
that one side accepts the other side accepts too.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import cast

from chatbot.options.v1 import field_options_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.outgoing_rules import OUTGOING_MESSAGE, outgoing_problems

# Matched with fullmatch: `$` would also match before a final newline.
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

#: The largest integer either store holds (SQLite INTEGER and BSON int64 are signed).
MAX_STORED_INTEGER = 2**63 - 1
_UNSIGNED_64 = (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)


def is_uuid4(value: str) -> bool:
    """True for a canonical lower-case UUID version 4 (the only form used as a file name)."""
    return isinstance(value, str) and _UUID4.fullmatch(value) is not None


def _constraints(field: FieldDescriptor) -> field_options_pb2.FieldConstraints | None:
    options = field.GetOptions()
    if options.HasExtension(field_options_pb2.field):
        return options.Extensions[field_options_pb2.field]
    return None


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    name: str
    # The constraints as plain values: reading a field of the options message costs a
    # call into protobuf per rule, for every field of every message at every hop.
    has_rules: bool
    required: bool
    uuid4: bool
    max_length: int
    max_items: int
    repeated: bool
    # For a message field: whether its type has anything to check at all (a Timestamp
    # has not, so it is not walked).
    is_message: bool
    walk: bool
    # For an enum field: the numbers it knows.
    enum_numbers: frozenset[int] | None
    unsigned_64: bool


@dataclass(frozen=True, slots=True)
class _MessagePlan:
    # (oneof name, its field names) for every real oneof: exactly one is required.
    oneofs: tuple[tuple[str, str], ...]
    # Only the fields that have something to check: a plain scalar without constraints
    # is never read (most of a frame's fields, and a frame is validated at every hop).
    fields: tuple[_FieldPlan, ...]
    outgoing: bool


def _field_plan(field: FieldDescriptor) -> _FieldPlan | None:
    rules = _constraints(field)
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    is_enum = field.type == FieldDescriptor.TYPE_ENUM
    unsigned_64 = field.type in _UNSIGNED_64
    if rules is None and not (is_message or is_enum or unsigned_64):
        return None
    walk = is_message and field.message_type is not None and _needs_walk(field.message_type)
    if is_message and not walk and rules is None:
        return None  # e.g. a Timestamp: nothing to check in it or about it
    enum = field.enum_type
    numbers = frozenset(v.number for v in enum.values) if enum is not None else frozenset()
    return _FieldPlan(
        name=field.name,
        has_rules=rules is not None,
        required=rules is not None and rules.required,
        uuid4=rules is not None and rules.uuid4,
        max_length=rules.max_length if rules is not None else 0,
        max_items=rules.max_items if rules is not None else 0,
        repeated=field.is_repeated,
        is_message=is_message,
        walk=walk,
        enum_numbers=numbers if is_enum else None,
        unsigned_64=unsigned_64,
    )


def _needs_walk(descriptor: Descriptor, visiting: frozenset[str] = frozenset()) -> bool:
    """Whether a message of this type, or any message inside it, has something to check
    (read once per field while a plan is built). A type met again inside itself counts
    as needing it, which ends the recursion."""
    if descriptor.full_name in visiting:
        return True
    if descriptor.full_name == OUTGOING_MESSAGE:
        return True
    if any(not oneof.name.startswith("_") for oneof in descriptor.oneofs):
        return True
    inside = visiting | {descriptor.full_name}
    for field in cast("list[FieldDescriptor]", list(descriptor.fields)):
        if _constraints(field) is not None or field.type in (
            FieldDescriptor.TYPE_ENUM,
            *_UNSIGNED_64,
        ):
            return True
        nested = field.message_type
        if (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and nested is not None
            and _needs_walk(nested, inside)
        ):
            return True
    return False


@functools.cache
def _plan(descriptor: Descriptor) -> _MessagePlan:
    """What to check on a message type, read from its descriptor once per process:
    walking descriptors and options for every message was most of a frame's parse cost.
    Descriptors are immutable and few, so the cache is bounded by the contract."""
    # Real oneofs in our contracts always mean "exactly one is required"; synthetic
    # oneofs are how proto3 `optional` is represented and carry no such rule.
    oneofs = tuple(
        (oneof.name, ", ".join(f.name for f in oneof.fields))
        for oneof in descriptor.oneofs
        if not oneof.name.startswith("_")
    )
    fields = tuple(
        plan
        for plan in (
            _field_plan(field) for field in cast("list[FieldDescriptor]", list(descriptor.fields))
        )
        if plan is not None
    )
    return _MessagePlan(oneofs, fields, descriptor.full_name == OUTGOING_MESSAGE)


def validate_message(message: Message, path: str = "") -> list[str]:
    """Returns every constraint violation as `path: problem`; empty when valid."""
    problems: list[str] = []
    plan = _plan(message.DESCRIPTOR)
    for name, names in plan.oneofs:
        if message.WhichOneof(name) is None:
            problems.append(f"{path}{name}: exactly one of [{names}] is required")
    for item in plan.fields:
        name = item.name
        if item.is_message and not item.repeated:
            if message.HasField(name):
                if item.walk:
                    problems.extend(validate_message(getattr(message, name), f"{path}{name}."))
            elif item.required:
                problems.append(f"{path}{name}: required")
            continue
        value = getattr(message, name)
        if item.repeated:
            if item.required and len(value) == 0:
                problems.append(f"{path}{name}: required")
            if item.max_items and len(value) > item.max_items:
                problems.append(f"{path}{name}: more than {item.max_items} items")
            if item.walk:
                for i, element in enumerate(value):
                    problems.extend(validate_message(element, f"{path}{name}[{i}]."))
            continue
        if item.enum_numbers is not None and value not in item.enum_numbers:
            problems.append(f"{path}{name}: unknown enum value {value}")
            continue
        if item.unsigned_64 and value > MAX_STORED_INTEGER:
            # A valid uint64 that no store can hold: refused here rather than failing
            # (and being retried) at the store.
            problems.append(f"{path}{name}: larger than {MAX_STORED_INTEGER}")
            continue
        if not item.has_rules:
            continue
        if item.required and not value:
            problems.append(f"{path}{name}: required")
            continue
        if isinstance(value, str):
            if item.max_length and len(value) > item.max_length:
                problems.append(f"{path}{name}: longer than {item.max_length} characters")
            if item.uuid4 and value and not is_uuid4(value):
                problems.append(f"{path}{name}: not a lower-case UUID4")
    if plan.outgoing:
        problems.extend(outgoing_problems(message, path))  # type: ignore[arg-type]
    return problems
