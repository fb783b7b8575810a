"""Spoken languages: the names the bot sees, and which language a transcript is decoded in.

Whisper detects the language from the first 30 s, and on short clips it is unreliable
(a 10 s German clip was taken for English at p=0.36 and came out garbled), so a bot's
configured languages override an unsure or unexpected detection.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

# Every language the multilingual Whisper models know, by Whisper's code (ISO 639-1
# except `haw` and `jw`), with the English name shown to the bot.
_NAMES = (
    "en English, zh Chinese, de German, es Spanish, ru Russian, ko Korean, fr French, "
    "ja Japanese, pt Portuguese, tr Turkish, pl Polish, ca Catalan, nl Dutch, ar Arabic, "
    "sv Swedish, it Italian, id Indonesian, hi Hindi, fi Finnish, vi Vietnamese, he Hebrew, "
    "uk Ukrainian, el Greek, ms Malay, cs Czech, ro Romanian, da Danish, hu Hungarian, "
    "ta Tamil, no Norwegian, th Thai, ur Urdu, hr Croatian, bg Bulgarian, lt Lithuanian, "
    "la Latin, mi Maori, ml Malayalam, cy Welsh, sk Slovak, te Telugu, fa Persian, "
    "lv Latvian, bn Bengali, sr Serbian, az Azerbaijani, sl Slovenian, kn Kannada, "
    "et Estonian, mk Macedonian, br Breton, eu Basque, is Icelandic, hy Armenian, "
    "ne Nepali, mn Mongolian, bs Bosnian, kk Kazakh, sq Albanian, sw Swahili, gl Galician, "
    "mr Marathi, pa Punjabi, si Sinhala, km Khmer, sn Shona, yo Yoruba, so Somali, "
    "af Afrikaans, oc Occitan, ka Georgian, be Belarusian, tg Tajik, sd Sindhi, "
    "gu Gujarati, am Amharic, yi Yiddish, lo Lao, uz Uzbek, fo Faroese, ht Haitian Creole, "
    "ps Pashto, tk Turkmen, nn Nynorsk, mt Maltese, sa Sanskrit, lb Luxembourgish, "
    "my Burmese, bo Tibetan, tl Tagalog, mg Malagasy, as Assamese, tt Tatar, haw Hawaiian, "
    "ln Lingala, ha Hausa, ba Bashkir, jw Javanese, su Sundanese, yue Cantonese"
)
WHISPER_LANGUAGES: Mapping[str, str] = MappingProxyType(
    dict(entry.split(" ", 1) for entry in _NAMES.split(", "))
)
# ISO 639-1 codes a bot may configure that Whisper spells differently.
_ISO_TO_WHISPER = MappingProxyType({"jv": "jw", "iw": "he", "nb": "no"})


def language_name(code: str) -> str:
    """`English` for `en`; an unknown code is shown as it is."""
    return WHISPER_LANGUAGES.get(code, code)


def whisper_languages(codes: Sequence[str]) -> tuple[str, ...]:
    """The bot's languages in Whisper's spelling, order kept, unknown codes dropped (a
    language Whisper cannot decode is no use as a hint)."""
    chosen: list[str] = []
    for code in codes:
        whisper = _ISO_TO_WHISPER.get(code.strip().lower(), code.strip().lower())
        if whisper in WHISPER_LANGUAGES and whisper not in chosen:
            chosen.append(whisper)
    return tuple(chosen)


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    """The language a transcript is decoded in, and why."""

    code: str
    # The detector's best guess and its probability (what was overridden, if anything).
    detected: str
    probability: float
    # True when the bot's first language replaced the detection.
    fell_back: bool


def choose_language(
    detected: str, probability: float, languages: Sequence[str], min_probability: float
) -> LanguageChoice:
    """Detection wins when no languages are configured; otherwise the bot's first
    language replaces a detection that is unsure (below `min_probability`) or not one
    of the bot's languages."""
    if not languages or (detected in languages and probability >= min_probability):
        return LanguageChoice(detected, detected, probability, fell_back=False)
    return LanguageChoice(languages[0], detected, probability, fell_back=True)
