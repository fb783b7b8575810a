"""The text a bot sees for structured messages: natural, sanitized and bounded."""

from __future__ import annotations

import json

from chatbot.common.v1 import context_pb2 as c
from chatbot.common.v1 import details_pb2 as d

from services.common.render import render, render_details, reply_prefix, sanitize_type_name


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


def test_business_message_is_the_question_and_its_numbered_choices() -> None:
    message = d.BusinessMessage(
        kind=d.BUSINESS_MESSAGE_KIND_BUTTONS,
        body="Do you want a call back?",
        footer="Reply below",
        choices=[d.BusinessChoice(id="y", title="Yes"), d.BusinessChoice(id="n", title="No")],
    )
    assert render_details(d.MessageDetails(business_message=message)) == (
        "[Buttons] Do you want a call back?\n1. Yes\n2. No"
    )
    listed = d.BusinessMessage(
        kind=d.BUSINESS_MESSAGE_KIND_LIST,
        header="Menu",
        body="Pick a size",
        choices=[d.BusinessChoice(id="s", title="Small", description="250 ml")],
        omitted_choice_count=3,
    )
    assert render_details(d.MessageDetails(business_message=listed)) == (
        "[List] Menu — Pick a size\n1. Small — 250 ml\n(3 more choices not shown)"
    )


def test_commerce_says_kind_reference_items_amount_and_status() -> None:
    order = d.Commerce(
        kind=d.COMMERCE_KIND_ORDER,
        reference_id="123",
        item_count=2,
        amount="12.50",
        currency="EUR",
        status="shipped",
    )
    assert render_details(d.MessageDetails(commerce=order)) == (
        "[Order 123: 2 items, 12.50 EUR, status shipped]"
    )
    request = d.Commerce(kind=d.COMMERCE_KIND_PAYMENT_REQUEST, amount="10.00", currency="USD")
    assert render_details(d.MessageDetails(commerce=request)) == "[Payment request: 10.00 USD]"
    product = d.Commerce(kind=d.COMMERCE_KIND_PRODUCT, title="Blue shirt", text="in stock")
    assert render_details(d.MessageDetails(commerce=product)) == ("[Product: Blue shirt] in stock")


def test_group_events_name_who_did_what_never_as_a_person_writing() -> None:
    added = d.GroupEvent(
        action=d.GROUP_ACTION_ADD,
        stub_type="GROUP_PARTICIPANT_ADD",
        participants=[c.Mention(jid="1@lid", phone="4915112345678"), c.Mention(jid="2@lid")],
    )
    context = c.MessageContext(sender_phone="4917600000001")
    assert render("", d.MessageDetails(group_event=added), context=context, sender="9@lid") == (
        "[Group] +4917600000001 added +4915112345678, 2@lid"
    )
    subject = d.GroupEvent(
        action=d.GROUP_ACTION_SUBJECT, stub_type="GROUP_CHANGE_SUBJECT", new_value="Book club\n"
    )
    assert render("", d.MessageDetails(group_event=subject), sender="9@lid") == (
        '[Group] 9@lid changed the subject to "Book club"'
    )
    left = d.GroupEvent(action=d.GROUP_ACTION_LEAVE, stub_type="GROUP_PARTICIPANT_LEAVE")
    assert render("", d.MessageDetails(group_event=left), sender="9@lid") == "[Group] 9@lid left"


def test_unreadable_timer_identity_and_unreadable_edit() -> None:
    assert render_details(d.MessageDetails(undecryptable=d.Undecryptable(reason="bad MAC"))) == (
        "[A message from this person could not be read]"
    )
    week = d.DisappearingTimer(expiration_seconds=7 * 86400)
    assert render_details(d.MessageDetails(disappearing_timer=week)) == (
        "[Disappearing messages set to 7 days]"
    )
    off = d.MessageDetails(disappearing_timer=d.DisappearingTimer())
    assert render_details(off) == "[Disappearing messages turned off]"
    change = d.IdentityChange(
        previous_correspondent_id="4915112345678@s.whatsapp.net", correspondent_id="77@lid"
    )
    assert render_details(d.MessageDetails(identity_change=change)) == (
        "[Identity] 4915112345678@s.whatsapp.net is now 77@lid"
    )
    secret = d.Edit(target_message_id="A1", decrypted=False)
    assert render_details(d.MessageDetails(edit=secret)) == (
        "[Edited message A1] (new text not readable)"
    )


def test_context_lines_come_before_the_reply_line_and_the_text() -> None:
    context = c.MessageContext(
        chat_kind=c.CHAT_KIND_NEWSLETTER,
        view_once=True,
        forwarded=True,
        ad_reply=c.AdReply(title="Summer \u202esale", source_id="ad-1"),
    )
    reply = d.ReplyContext(quoted_message_id="Q1")
    assert render("hi", reply_to=reply, context=context) == (
        '[Channel post] [View once]\n[Reply to ad "Summer sale"]\n[Reply to message Q1]\nhi'
    )
    assert render("mine", context=c.MessageContext(from_owner=True)) == "[Owner]\nmine"
    # Identity, mentions, forwarding and the timer are typed fields only.
    quiet = c.MessageContext(
        sender_phone="49151",
        forwarded=True,
        mentions=[c.Mention(jid="1@lid")],
        expiration_seconds=86400,
    )
    assert render("plain", context=quiet) == "plain"


def test_reply_prefix_renders_stored_context_and_reply_lines_for_media() -> None:
    stored = json.dumps(
        {
            "context": {"viewOnce": True, "senderPhone": "49151", "zz": 1},
            "replyTo": {"quotedMessageId": "Q1", "snippet": "where?"},
        }
    )
    assert reply_prefix(stored) == '[View once]\n[Reply to message Q1: "where?"]\n'
    assert reply_prefix(json.dumps({"context": {"forwarded": True}})) == ""
    assert reply_prefix(None) == ""


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
