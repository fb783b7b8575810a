"""The text a bot sees for structured messages: natural, sanitized and bounded."""

from __future__ import annotations

from chatbot.common.v1 import details_pb2 as d

from services.common.render import render, render_details, sanitize_type_name


def test_location_has_name_address_coordinates_and_a_map_link() -> None:
    details = d.MessageDetails(
        location=d.Location(
            latitude=52.52,
            longitude=13.405,
            coordinates_valid=True,
            name="Brandenburger Tor",
            address="Pariser Platz, Berlin",
        )
    )
    assert render_details(details) == (
        "📍 Brandenburger Tor, Pariser Platz, Berlin (52.52000, 13.40500)"
        " https://maps.google.com/?q=52.52,13.405"
    )


def test_out_of_range_coordinates_are_marked_without_a_link_even_if_claimed_valid() -> None:
    details = d.MessageDetails(
        location=d.Location(latitude=123.0, longitude=13.4, coordinates_valid=True)
    )
    assert render_details(details) == "📍 (invalid coordinates)"


def test_poll_lists_at_most_twelve_options_and_counts_the_rest() -> None:
    options = [d.PollOption(name=f"option {i}") for i in range(10_000)]
    text = render_details(d.MessageDetails(poll=d.Poll(question="Which?", options=options)))
    lines = text.split("\n")
    assert lines[:3] == ["[Poll] Which?", "1. option 0", "2. option 1"]
    assert lines[12] == "12. option 11"
    assert lines[13] == "(9988 more options not shown)"
    assert len(lines) == 14


def test_sender_text_loses_control_characters_and_is_bounded() -> None:
    contact = d.Contact(display_name="Eve\u202e\n\x00" + "x" * 5000)
    text = render_details(d.MessageDetails(contacts=d.Contacts(contacts=[contact])))
    assert "\u202e" not in text and "\n" not in text and "\x00" not in text
    assert len(text) < 300


def test_reaction_edit_deletion_vote_and_unsupported() -> None:
    assert (
        render_details(d.MessageDetails(reaction=d.Reaction(target_message_id="A1", emoji="👍")))
        == "[Reaction 👍 to message A1]"
    )
    assert (
        render_details(d.MessageDetails(reaction=d.Reaction(removed=True)))
        == "[Reaction removed from an unknown message]"
    )
    assert (
        render_details(d.MessageDetails(edit=d.Edit(target_message_id="A1", text="fixed")))
        == "[Edited message A1] fixed"
    )
    assert (
        render_details(d.MessageDetails(deletion=d.Deletion(target_message_id="A1")))
        == "[Message A1 deleted]"
    )
    vote = d.PollVote(
        poll_message_id="P1",
        decrypted=True,
        poll_question="Lunch?",
        selected_options=[d.PollOption(name="Pizza")],
    )
    assert render_details(d.MessageDetails(poll_vote=vote)) == (
        '[Poll vote] voted for "Pizza" on "Lunch?"'
    )
    assert sanitize_type_name("weird<script>Message\n") == "weirdscriptMessage"


def test_reply_context_precedes_the_text() -> None:
    reply = d.ReplyContext(quoted_message_id="Q1", snippet="see you at 5", snippet_truncated=True)
    assert render("ok!", reply_to=reply) == '[Reply to message Q1: "see you at 5…"]\nok!'
    assert render("ok!", reply_to=d.ReplyContext(quoted_message_id="Q2")) == (
        "[Reply to message Q2]\nok!"
    )


def test_emoji_sequences_and_emoji_newer_than_python_survive() -> None:
    for emoji in (
        "👨\u200d👩\u200d👧",
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
        "\U0001fae8",
    ):
        reaction = d.Reaction(target_message_id="A1", emoji=emoji)
        assert (
            render_details(d.MessageDetails(reaction=reaction))
            == f"[Reaction {emoji} to message A1]"
        )


def test_an_identity_change_names_both_ids_and_the_phone() -> None:
    change = d.IdentityChange(
        previous_correspondent_id="4915100000007@s.whatsapp.net",
        correspondent_id="777@lid",
        phone="4915100000007",
    )
    assert (
        render_details(d.MessageDetails(identity_change=change))
        == "[Identity] 4915100000007@s.whatsapp.net is now 777@lid (+4915100000007)"
    )
    change.ClearField("phone")
    change.correspondent_id = "777@lid\u202e\n"
    assert (
        render_details(d.MessageDetails(identity_change=change))
        == "[Identity] 4915100000007@s.whatsapp.net is now 777@lid"
    )
