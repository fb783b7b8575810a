"""What a bot's configuration says about its media: languages and transcription engine;
malformed values are ignored (logged), never failing a job."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from services.common.store import BotConfig
from services.media_svc.inputs import BotPreferences, bot_preferences


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, BotPreferences()),
        ({"languages": ["PT", "en", "pt"]}, BotPreferences(("pt", "en"))),
        ({"transcription": {"engine": "remote"}}, BotPreferences((), "remote")),
        (
            {"languages": "hi", "transcription": {"engine": "local"}},
            BotPreferences(("hi",), "local"),
        ),
        ({"transcription": {}}, BotPreferences()),
    ],
)
def test_preferences_are_read_from_the_configuration(
    extra: dict[str, Any], expected: BotPreferences
) -> None:
    assert bot_preferences(BotConfig("bot-1", extra=extra)) == expected


@pytest.mark.parametrize("transcription", [{"engine": "cloud"}, {"engine": 3}, "remote", ["local"]])
def test_a_malformed_transcription_setting_is_ignored_and_logged(
    transcription: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        preferences = bot_preferences(BotConfig("bot-1", extra={"transcription": transcription}))
    assert preferences == BotPreferences()
    assert "transcription" in caplog.text


def test_no_configuration_means_no_preferences() -> None:
    assert bot_preferences(None) == BotPreferences()
