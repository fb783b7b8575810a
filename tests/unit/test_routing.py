"""The routing table resolves every job to exactly one pool and rejects ambiguity."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import InvalidInputError
from services.common.routing import ProcessorDefinitions, default_definitions
from services.common.vocabulary import MEDIA_KINDS, MediaCondition, RouteKey, base_mime


def test_sticker_and_image_webp_are_told_apart_by_kind() -> None:
    table = default_definitions()
    assert table.resolve(MediaCondition.STAGED, "MEDIA_KIND_IMAGE", "image/webp") == "Image"
    assert table.resolve(MediaCondition.STAGED, "MEDIA_KIND_STICKER", "image/webp") == "Sticker"


def test_mime_parameters_do_not_take_part_in_routing() -> None:
    table = default_definitions()
    mime = "audio/ogg; codecs=opus"
    assert base_mime(mime) == "audio/ogg"
    assert table.resolve(MediaCondition.STAGED, "MEDIA_KIND_VOICE_NOTE", mime) == "Audio"
    assert str(RouteKey.of(MediaCondition.STAGED, "MEDIA_KIND_VOICE_NOTE", mime)).endswith(
        "|audio/ogg"
    )


def test_unknown_types_corrupt_and_over_quota_have_their_pools() -> None:
    table = default_definitions()
    zip_doc = ("MEDIA_KIND_DOCUMENT", "application/zip")
    assert table.resolve(MediaCondition.STAGED, *zip_doc) == "Unsupported"
    assert table.resolve(MediaCondition.CORRUPT, "MEDIA_KIND_VIDEO", "video/mp4") == "Corrupt"
    assert table.resolve(MediaCondition.OVER_QUOTA, *zip_doc) == "Unsupported"


def test_plain_text_documents_go_to_the_document_pool() -> None:
    table = default_definitions()
    assert table.resolve(MediaCondition.STAGED, "MEDIA_KIND_DOCUMENT", "text/plain") == "Document"


@given(
    st.sampled_from(list(MediaCondition)),
    st.sampled_from(sorted(MEDIA_KINDS)),
    st.sampled_from(["image/webp", "audio/ogg", "video/mp4", "application/pdf", "x/unknown"]),
)
def test_every_job_matches_exactly_one_pool(
    condition: MediaCondition, kind: str, mime: str
) -> None:
    table = default_definitions()
    matching = [
        p.name for p in table.pools if any(r.matches(condition, kind, mime) for r in p.routes)
    ]
    assert len(matching) <= 1
    assert table.resolve(condition, kind, mime) in {p.name for p in table.pools}


def test_document_round_trips() -> None:
    table = default_definitions()
    assert ProcessorDefinitions.from_document(table.to_document()) == table


def test_overlapping_routes_are_rejected_with_the_pools_named() -> None:
    document = default_definitions().to_document()
    document["pools"][1]["routes"][0]["media_kinds"].append("MEDIA_KIND_IMAGE")
    with pytest.raises(InvalidInputError, match="'Image' and 'Sticker'"):
        ProcessorDefinitions.from_document(document)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["pools"][6].update(fallback=False), "exactly one pool must have fallback"),
        (lambda d: d["pools"][0].update(concurrency=0), "concurrency"),
        (lambda d: d["pools"][0].update(colour="red"), "unknown keys"),
        (lambda d: d["pools"][0]["routes"][0].update(media_kinds=["MEDIA_KIND_X"]), "unknown"),
        (lambda d: d["pools"][1].update(name="Image"), "duplicate pool names"),
        (lambda d: d.update(pools=[]), "non-empty list"),
    ],
)
def test_bad_definitions_are_rejected(mutate: object, message: str) -> None:
    document = copy.deepcopy(default_definitions().to_document())
    mutate(document)  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match=message):
        ProcessorDefinitions.from_document(document)
