"""Long audio transcribed chunk by chunk, one chunk per processor run.

A voice note longer than the pool's `chunk_seconds` is not transcribed in one run that
holds the pool's slot for its whole length: each run transcribes the next chunk and
returns a `ProcessingProgress` carrying `AudioProgress` (the chunks' text so far, where
the next chunk starts, the language). The worker saves it with the job before anything
else (durable under the claim's fence), then runs the next chunk, or first lets a
cheaper job of the pool go (the job is re-queued and resumes from the saved progress).

- A chunk ends at the quietest 20 ms within the last part of its window, so a cut
  rarely splits a word; a tail shorter than a quarter chunk joins the chunk before it.
- The language is detected on the first chunk with speech and kept for every later one,
  so one note gives one language (a late chunk is not re-detected as another).
- The cuts depend only on the decoded samples, which are the same on every run: a run
  that resumes from a checkpoint cuts where the run that wrote it would have, and the
  text of every chunk enters the result once, in order. A crash mid-chunk loses only
  that chunk's work, which the next claim redoes from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from services.media_svc.processors.languages import LanguageChoice

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# The energy of 20 ms frames decides where a chunk ends.
_FRAME = SAMPLE_RATE // 50
_KIND = "audio_chunks"
_VERSION = 1


@dataclass(frozen=True, slots=True)
class AudioProgress:
    # Samples of the decoded clip (16 kHz) already transcribed.
    offset: int
    # Samples of the whole decoded clip: a checkpoint of another clip is not resumed.
    total: int
    # Each transcribed chunk's text, in order ("" for a chunk without speech).
    texts: tuple[str, ...]
    # Chosen on the first chunk with speech; None until then.
    language: LanguageChoice | None

    @property
    def done(self) -> bool:
        return self.offset >= self.total

    @property
    def remaining(self) -> float:
        """The share of the clip left, in (0, 1] while not done."""
        return (self.total - self.offset) / self.total if self.total else 0.0

    def text(self) -> str:
        return " ".join(text for text in self.texts if text)

    def advanced(self, end: int, text: str, language: LanguageChoice | None) -> AudioProgress:
        return AudioProgress(end, self.total, (*self.texts, text), self.language or language)

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "kind": _KIND,
            "version": _VERSION,
            "offset": self.offset,
            "total": self.total,
            "texts": list(self.texts),
            "language": None,
        }
        if self.language is not None:
            choice = self.language
            document["language"] = {
                "code": choice.code,
                "probability": choice.probability,
                "detected": choice.detected,
                "detected_probability": choice.detected_probability,
                "fell_back": choice.fell_back,
            }
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def resume(cls, checkpoint: str | None, total: int) -> AudioProgress:
        """The progress a checkpoint holds for a clip of `total` samples; from the start
        when there is none, or it is not this clip's (a file re-staged differently, a
        checkpoint of another processor, a damaged one: logged, then started over)."""
        start = cls(0, total, (), None)
        if checkpoint is None:
            return start
        try:
            progress = _parse(json.loads(checkpoint))
        except (ValueError, TypeError, KeyError) as error:
            log.warning("audio checkpoint not usable (%s); transcribing from the start", error)
            return start
        if progress.total != total or not 0 < progress.offset <= total:
            log.warning(
                "audio checkpoint is of another clip (%d of %d samples, this one has %d);"
                " transcribing from the start",
                progress.offset,
                progress.total,
                total,
            )
            return start
        return progress


def _parse(document: Any) -> AudioProgress:
    if not isinstance(document, dict) or document.get("kind") != _KIND:
        raise ValueError("not an audio chunk checkpoint")
    if document.get("version") != _VERSION:
        raise ValueError(f"version {document.get('version')!r}")
    offset, total, texts = document["offset"], document["total"], document["texts"]
    if not isinstance(offset, int) or not isinstance(total, int):
        raise TypeError("offset and total must be integers")
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise TypeError("texts must be a list of strings")
    raw = document["language"]
    language = None
    if raw is not None:
        language = LanguageChoice(
            str(raw["code"]),
            float(raw["probability"]),
            str(raw["detected"]),
            float(raw["detected_probability"]),
            bool(raw["fell_back"]),
        )
    return AudioProgress(offset, total, tuple(texts), language)


def chunk_end(samples: npt.NDArray[np.float32], start: int, chunk_seconds: float) -> int:
    """Where the chunk starting at `start` ends: the quietest 20 ms frame in the last
    sixth of its window (at most 5 s), or the end of the clip when less than a quarter
    chunk would be left after it."""
    import numpy as np  # noqa: PLC0415 - worker only (the parent imports this module)

    total = len(samples)
    chunk = int(chunk_seconds * SAMPLE_RATE)
    if total - start <= chunk + chunk // 4:
        return total
    window_end = start + chunk
    search = min(chunk // 6, 5 * SAMPLE_RATE) // _FRAME * _FRAME
    frames = samples[window_end - search : window_end].reshape(-1, _FRAME)
    energy = np.einsum("ij,ij->i", frames, frames)
    # The first of equally quiet frames: the same samples always give the same cut.
    quietest = int(np.argmin(energy))
    return window_end - search + quietest * _FRAME + _FRAME // 2
