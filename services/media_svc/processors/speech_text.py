"""The text the bot sees for audio and video: one bracketed header, then the content.

    [Voice note, 0:12, English] I'll be there at five.
    [Voice note, 0:03, Portuguese, unsure: 21%] Oi, tudo bem?
    [Audio, 20:00, Spanish, transcribed first 15:00] Hola …
    [Voice note, 0:05: no speech detected]
    [Video, 0:32] Speech (English): "…" Text on screen: "…"
    [GIF, 0:04: no text found]

The caption is appended by the worker, not here.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.media_svc.processors.base import kind_title
from services.media_svc.processors.languages import LanguageChoice, language_name
from services.media_svc.processors.text import bounded, format_duration

# Below this probability the language is shown as unsure: the bot (or the person reading)
# should not trust a reply in that language blindly.
UNSURE_BELOW = 0.5


def language_label(language: LanguageChoice) -> str:
    """`English`, or `Portuguese, unsure: 21%` when the detector was not sure."""
    name = language_name(language.code)
    if language.probability < UNSURE_BELOW:
        return f"{name}, unsure: {language.probability:.0%}"
    return name


def _cut_note(cut: bool, decoded_seconds: float) -> list[str]:
    return [f"transcribed first {format_duration(decoded_seconds)}"] if cut else []


def render_audio(
    media_kind: str,
    duration_seconds: float,
    decoded_seconds: float,
    cut: bool,
    text: str,
    language: LanguageChoice | None,
    max_chars: int,
) -> str:
    head = [kind_title(media_kind), format_duration(duration_seconds)]
    if not text:
        where = f" in the first {format_duration(decoded_seconds)}" if cut else ""
        return f"[{', '.join(head)}: no speech detected{where}]"
    if language is not None:
        head.append(language_label(language))
    head += _cut_note(cut, decoded_seconds)
    return bounded(f"[{', '.join(head)}] {text}", max_chars)


def unique_lines(lines: Iterable[str]) -> list[str]:
    """Lines in first-seen order, each once: a caption shown for ten seconds appears on
    every key frame but should reach the bot once (compared ignoring case and spacing)."""
    seen: set[str] = set()
    kept: list[str] = []
    for line in lines:
        clean = " ".join(line.split())
        key = clean.casefold()
        if clean and key not in seen:
            seen.add(key)
            kept.append(clean)
    return kept


def render_video(
    media_kind: str,
    duration_seconds: float,
    *,
    has_audio: bool,
    decoded_seconds: float,
    cut: bool,
    speech: str,
    language: LanguageChoice | None,
    screen_lines: list[str],
    screen_note: str | None,
    max_chars: int,
) -> str:
    """`screen_note` replaces the on-screen text when frames could not be read."""
    head = [kind_title(media_kind), format_duration(duration_seconds)]
    body: list[str] = []
    if speech:
        head += _cut_note(cut, decoded_seconds)
        name = f" ({language_label(language)})" if language is not None else ""
        body.append(f'Speech{name}: "{speech}"')
    if screen_lines:
        body.append(f'Text on screen: "{" / ".join(screen_lines)}"')
    elif screen_note:
        body.append(f"Text on screen: {screen_note}")
    if not body:
        found = "no speech or text found" if has_audio else "no text found"
        return f"[{', '.join(head)}: {found}]"
    return bounded(f"[{', '.join(head)}] {' '.join(body)}", max_chars)
