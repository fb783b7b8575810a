"""The media `make demo` sends, made at run time (nothing downloaded or checked in):
speech from espeak-ng encoded as WhatsApp voice notes, an image and stickers with text
drawn by Pillow, a video with a spoken track and a text frame, a PDF, a DOCX, a broken
file and a zip. Each returns the words the bot must find in what it receives."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.helpers.media_samples import read_mono, speak, text_frame, voice_note, write_video
from tests.helpers.vision_inputs import docx_bytes, pdf_bytes, text_image


@dataclass(frozen=True)
class DemoMedia:
    """A file of the conversation and words that must appear in its text."""

    path: Path
    expect: tuple[str, ...]


def english_voice_note(directory: Path) -> DemoMedia:
    path = voice_note(
        "Hello, this is Alice. Can we move our meeting to Friday afternoon?",
        "en",
        directory / "voice-en.ogg",
    )
    return DemoMedia(path, ("friday", "meeting", "English"))


def spanish_voice_note(directory: Path) -> DemoMedia:
    path = voice_note("Buenos días. Necesito ayuda, por favor.", "es", directory / "voice-es.ogg")
    return DemoMedia(path, ("necesito", "favor", "Spanish"))


def photo_with_text(directory: Path) -> DemoMedia:
    path = directory / "opening-hours.jpg"
    image = text_image(
        [((80, 260), "OPEN MONDAY TO FRIDAY"), ((80, 360), "NINE TO FIVE")], size=(1024, 768)
    )
    image.save(path, format="JPEG", quality=90)
    return DemoMedia(path, ("[Image: JPEG 1024", "MONDAY", "FRIDAY"))


def static_sticker(directory: Path) -> DemoMedia:
    path = directory / "thanks.webp"
    text_image([((60, 200), "THANK YOU")], size=(512, 512), font_size=72).save(path, format="WEBP")
    return DemoMedia(path, ("[Sticker]", "THANK"))


def animated_sticker(directory: Path) -> DemoMedia:
    path = directory / "wow.webp"
    frames = [
        text_image([((120, 200), word)], size=(512, 512), font_size=96)
        for word in ("WOW", "WOW", "WOW!")
    ]
    frames[0].save(path, format="WEBP", save_all=True, append_images=frames[1:], duration=300)
    return DemoMedia(path, ("Animated sticker", "WOW"))


def video_with_speech(directory: Path) -> DemoMedia:
    wav = speak("The package arrived this morning.", "en", directory / "video-speech.wav")
    frames: list[Image.Image] = [
        text_frame(["TRACKING NUMBER", "AB 12345"]),
        text_frame(["TRACKING NUMBER", "AB 12345"]),
    ]
    path = write_video(directory / "parcel.mp4", frames, 1.5, read_mono(wav))
    return DemoMedia(path, ("[Video", "package", "TRACKING"))


def pdf_menu(directory: Path) -> DemoMedia:
    path = directory / "menu.pdf"
    path.write_bytes(
        pdf_bytes(["Tonight: tomato soup, fresh bread and apple pie.", "Drinks: lemonade, tea."])
    )
    return DemoMedia(path, ("[Document: menu.pdf, PDF, 2 pages]", "apple pie", "lemonade"))


def docx_agenda(directory: Path) -> DemoMedia:
    path = directory / "agenda.docx"
    path.write_bytes(
        docx_bytes(
            ["Agenda for Friday", "1. Budget review", "2. Summer party planning"],
            table=[["Owner", "Topic"], ["Alice", "Budget"]],
        )
    )
    return DemoMedia(path, ("[Document: agenda.docx, DOCX", "Budget review", "Summer party"))


def zip_archive(directory: Path) -> DemoMedia:
    path = directory / "archive.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "not for the bot")
    path.write_bytes(buffer.getvalue())
    return DemoMedia(path, ("Unsupported",))
