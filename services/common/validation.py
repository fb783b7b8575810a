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
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
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


def _enum_known(enum: EnumDescriptor | None, number: int) -> bool:
    return enum is not None and number in enum.values_by_number


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    field: FieldDescriptor
    rules: field_options_pb2.FieldConstraints | None
    repeated: bool
    is_message: bool
    is_enum: bool
    unsigned_64: bool


@dataclass(frozen=True, slots=True)
class _MessagePlan:
    # (oneof name, its field names) for every real oneof: exactly one is required.
    oneofs: tuple[tuple[str, str], ...]
    # Only the fields that have something to check: a plain scalar without constraints
    # is never read (most of a frame's fields, and a frame is validated at every hop).
    fields: tuple[_FieldPlan, ...]
    outgoing: bool


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
            _FieldPlan(
                field,
                _constraints(field),
                field.is_repeated,
                field.type == FieldDescriptor.TYPE_MESSAGE,
                field.type == FieldDescriptor.TYPE_ENUM,
                field.type in _UNSIGNED_64,
            )
            for field in cast("list[FieldDescriptor]", list(descriptor.fields))
        )
        if plan.rules is not None or plan.is_message or plan.is_enum or plan.unsigned_64
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
        field, rules = item.field, item.rules
        if item.is_message and not item.repeated:
            if message.HasField(field.name):
                problems.extend(
                    validate_message(getattr(message, field.name), f"{path}{field.name}.")
                )
            elif rules is not None and rules.required:
                problems.append(f"{path}{field.name}: required")
            continue
        value = getattr(message, field.name)
        if item.repeated:
            if rules is not None and rules.required and len(value) == 0:
                problems.append(f"{path}{field.name}: required")
            if rules is not None and rules.max_items and len(value) > rules.max_items:
                problems.append(f"{path}{field.name}: more than {rules.max_items} items")
            if item.is_message:
                for i, element in enumerate(value):
                    problems.extend(validate_message(element, f"{path}{field.name}[{i}]."))
            continue
        if item.is_enum and not _enum_known(field.enum_type, value):
            problems.append(f"{path}{field.name}: unknown enum value {value}")
            continue
        if item.unsigned_64 and value > MAX_STORED_INTEGER:
            # A valid uint64 that no store can hold: refused here rather than failing
            # (and being retried) at the store.
            problems.append(f"{path}{field.name}: larger than {MAX_STORED_INTEGER}")
            continue
        if rules is None:
            continue
        if rules.required and not value:
            problems.append(f"{path}{field.name}: required")
            continue
        if isinstance(value, str):
            if rules.max_length and len(value) > rules.max_length:
                problems.append(f"{path}{field.name}: longer than {rules.max_length} characters")
            if rules.uuid4 and value and not is_uuid4(value):
                problems.append(f"{path}{field.name}: not a lower-case UUID4")
    if plan.outgoing:
        problems.extend(outgoing_problems(message, path))  # type: ignore[arg-type]
    return problems
