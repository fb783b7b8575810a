"""Spoken languages: the names the bot sees, and which language a transcript is decoded in.

Whisper detects the language from the first 30 s and gives a probability to each of its
99 languages. On short or unclear clips the best guess is often a language nobody sends
voice notes in: a Brazilian Portuguese note came out as Latin (p=0.16) and garbled. So the
choice is made only among candidates: the bot's `languages` when it has them, otherwise
the pool's list of living languages people write to businesses in (`DEFAULT_CANDIDATES`),
and the most likely candidate wins whatever its probability. A bot's configured languages
also act as a prior: when the best of them holds less than `min_probability` of the
probability the candidates share, the bot's first language is used (a 1.5 s German
"Ja, gut." is taken for English by Whisper base).

The script follows the language: Whisper base writes Hindi in Urdu script and Chinese
in traditional characters about as often as not, so the decoder is given a short prompt
in the expected script (`SCRIPT_PROMPTS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
_ISO_TO_WHISPER = MappingProxyType({"jv": "jw", "iw": "he", "nb": "no", "fil": "tl"})
_WHISPER_TO_ISO = MappingProxyType({"jw": "jv"})


def language_name(code: str) -> str:
    """`English` for `en`; an unknown code is shown as it is."""
    return WHISPER_LANGUAGES.get(code, code)


def iso_language(code: str) -> str:
    """The ISO 639-1 spelling of a Whisper code (`jw` → `jv`), for typed fields."""
    return _WHISPER_TO_ISO.get(code, code)


def whisper_languages(codes: Sequence[str]) -> tuple[str, ...]:
    """The bot's languages in Whisper's spelling, order kept, unknown codes dropped (a
    language Whisper cannot decode is no use as a hint)."""
    chosen: list[str] = []
    for code in codes:
        whisper = _ISO_TO_WHISPER.get(code.strip().lower(), code.strip().lower())
        if whisper in WHISPER_LANGUAGES and whisper not in chosen:
            chosen.append(whisper)
    return tuple(chosen)


# Living languages people write to businesses in, by Whisper's code: the largest WhatsApp
# markets first, then the other languages with tens of millions of speakers that Whisper
# decodes. Left out: dead and liturgical languages (Latin, Sanskrit), and small languages
# Whisper base picks for unclear or synthetic speech (Sinhala, Khmer, Lao, Maori, Welsh,
# Breton, Faroese, Nynorsk, Hawaiian, ...): a pool whose correspondents speak one of them
# lists it in its `detect_languages` option, or a bot in its `languages`.
DEFAULT_CANDIDATES: tuple[str, ...] = (
    "en", "es", "pt", "hi", "id", "ar", "ru", "fr", "de", "it", "tr", "ur", "bn", "fa",
    "ms", "sw", "nl", "pl", "uk", "ja", "ko", "zh", "vi", "th", "tl", "ta", "te", "mr",
    "gu", "pa", "kn", "ml", "ne", "he", "ro", "el", "cs", "sk", "hu", "sv", "da", "fi",
    "no", "ca", "hr", "sr", "bg", "az", "kk", "uz", "am", "ha", "yo", "so", "af", "yue",
)  # fmt: skip
# Words in the expected script, given to the decoder as the previous text. Whisper
# continues in the script of its context: without it Whisper base wrote Hindi in Urdu
# script, Chinese in traditional characters, Punjabi in Shahmukhi, Serbian in Latin.
SCRIPT_PROMPTS: Mapping[str, str] = MappingProxyType(
    {
        "hi": "नमस्ते, आप कैसे हैं? मैं ठीक हूँ, धन्यवाद।",
        "mr": "नमस्कार, तुम्ही कसे आहात? मी ठीक आहे, धन्यवाद.",
        "ne": "नमस्ते, तपाईंलाई कस्तो छ? म ठिक छु, धन्यवाद।",
        "pa": "ਸਤ ਸ੍ਰੀ ਅਕਾਲ, ਤੁਸੀਂ ਕਿਵੇਂ ਹੋ? ਮੈਂ ਠੀਕ ਹਾਂ, ਧੰਨਵਾਦ।",
        "zh": "以下是普通话的句子。你好，请问有什么可以帮你？",  # noqa: RUF001
        "sr": "Здраво, како сте? Добро сам, хвала.",
    }
)


@dataclass(frozen=True, slots=True)
class LanguageChoice:
    """The language a transcript is decoded in, how likely the detector found it, and
    what the detector liked best (which may be a language that was not a candidate)."""

    code: str
    probability: float
    detected: str
    detected_probability: float
    # True when the bot's first language replaced an unsure choice among its languages.
    fell_back: bool = False


def candidate_languages(pool: Sequence[str], bot: Sequence[str]) -> tuple[str, ...]:
    """The bot's languages when it has any (an explicit per-bot choice, honoured even
    outside the pool's list), otherwise the pool's candidates."""
    return tuple(bot) if bot else tuple(pool)


def choose_language(
    probabilities: Iterable[tuple[str, float]],
    candidates: Sequence[str],
    bot_languages: Sequence[str],
    min_probability: float,
) -> LanguageChoice:
    """The most likely candidate (never a language outside `candidates` while one is
    given); with bot languages, the bot's first when the best one's share of the
    candidates' probability is below `min_probability`."""
    ranked = sorted(((float(p), code) for code, p in probabilities), reverse=True)
    if not ranked:
        first = (bot_languages or candidates or ("en",))[0]
        return LanguageChoice(first, 0.0, first, 0.0, fell_back=bool(bot_languages))
    detected_probability, detected = ranked[0]
    allowed = candidate_languages(candidates, bot_languages)
    eligible = [(p, code) for p, code in ranked if code in allowed] if allowed else ranked
    if not eligible:  # the detector gave none of them a probability
        first = allowed[0]
        return LanguageChoice(first, 0.0, detected, detected_probability, bool(bot_languages))
    best_probability, best = eligible[0]
    if bot_languages:
        share = sum(p for p, _ in eligible)
        first = bot_languages[0]
        if first != best and (share <= 0 or best_probability / share < min_probability):
            first_probability = next((p for p, code in eligible if code == first), 0.0)
            return LanguageChoice(first, first_probability, detected, detected_probability, True)
    return LanguageChoice(best, best_probability, detected, detected_probability)


def script_prompt(code: str) -> str | None:
    """Text in `code`'s expected script for the decoder's context, when Whisper is known
    to drift into another script for it."""
    return SCRIPT_PROMPTS.get(code)
