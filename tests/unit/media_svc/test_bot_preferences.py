"""What a bot's configuration says about its media: languages and transcription engine.
Malformed languages are ignored (logged) at job time; a malformed transcription setting
is refused when the configuration is written."""

from __future__ import annotations

from typing import Any

import pytest

from services.common.errors import InvalidInputError
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
def test_a_malformed_transcription_setting_is_refused_when_configured(
    transcription: object,
) -> None:
    # The gateway's PUT /bots/{id}/config answers this error; nothing is stored.
    with pytest.raises(InvalidInputError, match="transcription must be"):
        BotConfig("bot-1", extra={"transcription": transcription})


def test_no_configuration_means_no_preferences() -> None:
    assert bot_preferences(None) == BotPreferences()
