"""The choice of transcription engine: any CTranslate2 Whisper model directory, and an
OpenAI-compatible `/v1/audio/transcriptions` endpoint as primary or fallback.

The endpoint is a real aiohttp server on a loopback port started here, which records
what it was sent (multipart fields, the file, the Authorization header). Loopback is
refused by the SSRF guard unless `OUTBOUND_ALLOW_HOSTS` lets it through, as in a
development set-up. The processor runs in a thread, as it would in its worker process,
while the server answers on the test's event loop."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from services.common.errors import InvalidInputError
from services.media_svc.engines.whisper import ModelMissingError, WhisperEngine
from services.media_svc.processors.audio import AudioProcessor
from services.media_svc.processors.base import ProcessingSuccess
from services.media_svc.processors.contract import ProcessorInput
from tests.helpers import media_samples

KEY_ENV = "TEST_TRANSCRIPTION_KEY"
REMOTE_TEXT = "Texto do servidor remoto."


@dataclass
class Endpoint:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Set by a test to make the endpoint answer that status, or hang until released.
    status: int = 200
    hang: asyncio.Event | None = None


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    state = Endpoint(url="")

    async def transcriptions(request: web.Request) -> web.Response:
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        state.requests.append(
            {
                "authorization": request.headers.get("Authorization"),
                "fields": {k: v for k, v in form.items() if isinstance(v, str)},
                "file_name": upload.filename,
                "file": upload.file.read(),
            }
        )
        if state.hang is not None:
            await state.hang.wait()
        if state.status != 200:
            return web.json_response({"error": {"message": "overloaded"}}, status=state.status)
        return web.json_response(
            {"task": "transcribe", "language": "portuguese", "duration": 1.2, "text": REMOTE_TEXT}
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
    try:
        yield state
    finally:
        if state.hang is not None:
            state.hang.set()
        await runner.cleanup()


@pytest.fixture(scope="module")
def engine(whisper_model_dir: Path) -> WhisperEngine:
    return AudioProcessor.load_engine(AudioProcessor.parse_options({}))


@pytest.fixture(scope="module")
def note(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("notes")
    return media_samples.voice_note("Thank you very much.", "en", directory / "thanks.ogg")


@pytest.fixture
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_ALLOW_HOSTS", "127.0.0.1")
    monkeypatch.setenv(KEY_ENV, "sk-test-123")


def _process(
    engine: WhisperEngine, note: Path, options: dict[str, Any], speech_engine: str
) -> ProcessingSuccess:
    parsed = AudioProcessor.parse_options(options)
    item = ProcessorInput(
        "MEDIA_KIND_VOICE_NOTE",
        "audio/ogg",
        note,
        size=note.stat().st_size,
        speech_engine=speech_engine,
    )
    outcome = AudioProcessor.process(engine, parsed, item)
    assert isinstance(outcome, ProcessingSuccess), outcome
    return outcome


async def _run(
    engine: WhisperEngine, note: Path, options: dict[str, Any], speech_engine: str = ""
) -> ProcessingSuccess:
    return await asyncio.to_thread(_process, engine, note, options, speech_engine)


def _remote(endpoint: Endpoint, **extra: Any) -> dict[str, Any]:
    return {"remote_url": endpoint.url, "remote_api_key_env": KEY_ENV, **extra}


def _is_local(outcome: ProcessingSuccess) -> bool:
    return "thank you" in outcome.text.lower() and REMOTE_TEXT not in outcome.text


@pytest.mark.usefixtures("allow_loopback")
async def test_a_primary_endpoint_gets_the_file_model_language_and_key(
    engine: WhisperEngine, note: Path, endpoint: Endpoint
) -> None:
    outcome = await _run(engine, note, _remote(endpoint, remote_mode="primary"))
    assert outcome.text.startswith("[Voice note, 0:02, English"), outcome.text
    assert outcome.text.endswith(f"] {REMOTE_TEXT}"), outcome.text
    [sent] = endpoint.requests
    assert sent["authorization"] == "Bearer sk-test-123"
    # The language is the one chosen locally among the candidates.
    assert sent["fields"] == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "language": "en",
    }
    assert sent["file"] == await asyncio.to_thread(note.read_bytes)
    assert sent["file_name"].endswith(".ogg")


@pytest.mark.usefixtures("allow_loopback")
async def test_a_bot_chooses_the_endpoint_or_keeps_its_audio_local(
    engine: WhisperEngine, note: Path, endpoint: Endpoint
) -> None:
    local = await _run(engine, note, _remote(endpoint, remote_mode="primary"), "local")
    assert _is_local(local), local.text
    assert endpoint.requests == []
    remote = await _run(engine, note, _remote(endpoint, remote_mode="fallback"), "remote")
    assert remote.text.endswith(REMOTE_TEXT), remote.text
    assert len(endpoint.requests) == 1


@pytest.mark.usefixtures("allow_loopback")
async def test_a_file_over_the_size_cap_is_not_sent(
    engine: WhisperEngine, note: Path, endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        options = _remote(endpoint, remote_mode="primary", remote_max_bytes=100)
        outcome = await _run(engine, note, options)
    assert _is_local(outcome), outcome.text
    assert endpoint.requests == []
    assert "remote_max_bytes 100" in caplog.text


@pytest.mark.usefixtures("allow_loopback")
@pytest.mark.parametrize("failure", ["down", "error", "timeout"])
async def test_an_endpoint_failure_falls_back_to_the_local_model_and_says_so_in_the_log(
    engine: WhisperEngine,
    note: Path,
    endpoint: Endpoint,
    caplog: pytest.LogCaptureFixture,
    failure: str,
) -> None:
    url = endpoint.url
    if failure == "down":
        # A port that was just listening and is closed now: connection refused.
        probe = web.AppRunner(web.Application())
        await probe.setup()
        site = web.TCPSite(probe, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{probe.addresses[0][1]}/v1/audio/transcriptions"
        await probe.cleanup()
    elif failure == "error":
        endpoint.status = 503
    else:
        endpoint.hang = asyncio.Event()
    options = {
        **_remote(endpoint, remote_mode="primary", remote_timeout_seconds=1),
        "remote_url": url,
    }
    with caplog.at_level(logging.WARNING):
        outcome = await _run(engine, note, options)
    assert _is_local(outcome), outcome.text
    assert "remote transcription failed" in caplog.text
    assert "remote" not in outcome.text.lower() and "fail" not in outcome.text.lower()


async def test_loopback_is_refused_without_the_development_allow_list(
    engine: WhisperEngine,
    note: Path,
    endpoint: Endpoint,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OUTBOUND_ALLOW_HOSTS", raising=False)
    monkeypatch.setenv(KEY_ENV, "sk-test-123")
    with caplog.at_level(logging.WARNING):
        outcome = await _run(engine, note, _remote(endpoint, remote_mode="primary"))
    assert _is_local(outcome), outcome.text
    assert endpoint.requests == []
    assert "loopback" in caplog.text


def test_an_operator_model_directory_is_checked_when_loaded(
    tmp_path: Path, whisper_model_dir: Path
) -> None:
    custom = tmp_path / "whisper-custom"
    custom.mkdir()
    options = AudioProcessor.parse_options({"model_path": str(custom)})
    with pytest.raises(ModelMissingError, match=r"no complete Whisper model in .*whisper-custom"):
        AudioProcessor.load_engine(options)
    (custom / "model.bin").symlink_to(whisper_model_dir / "model.bin")
    (custom / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelMissingError, match=r"config\.json cannot be read"):
        AudioProcessor.load_engine(options)
    (custom / "config.json").unlink()
    shutil.copy(whisper_model_dir / "config.json", custom / "config.json")
    with pytest.raises(ModelMissingError, match=r"no tokenizer\.json or vocabulary"):
        AudioProcessor.load_engine(options)
    for name in ("tokenizer.json", "vocabulary.txt"):
        (custom / name).symlink_to(whisper_model_dir / name)
    loaded = AudioProcessor.load_engine(options)
    assert loaded.model_dir == custom
    silent = media_samples.write_voice_note(media_samples.silence(1.0), tmp_path / "quiet.ogg")
    item = ProcessorInput("MEDIA_KIND_VOICE_NOTE", "audio/ogg", silent, size=silent.stat().st_size)
    assert AudioProcessor.process(loaded, options, item) == ProcessingSuccess(
        "[Voice note, 0:01: no speech detected]"
    )


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"model_path": "relative/dir"}, "options.model_path: must be an absolute path"),
        ({"model_path": "/m", "model": "whisper-base"}, "options.model_path: replaces"),
        ({"remote_mode": "primary"}, "options.remote_url: required"),
        ({"remote_url": "ftp://example.com/x"}, "options.remote_url"),
        ({"remote_url": "https://u:p@example.com/x"}, "without credentials"),
        ({"remote_url": "https://example.com/x", "remote_mode": "always"}, "options.remote_mode"),
        ({"remote_url": "https://example.com/x", "remote_api_key_env": "sk-123"}, "NAME"),
        ({"remote_url": "https://example.com/x", "remote_timeout_seconds": 0}, "remote_timeout"),
        ({"remote_url": "https://example.com/x", "remote_max_bytes": 0}, "remote_max_bytes"),
        ({"detect_languages": []}, "options.detect_languages"),
        ({"detect_languages": ["pt", "xx"]}, r"\['xx'\] are not languages"),
    ],
)
def test_bad_engine_options_are_refused_naming_the_option(raw: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError, match=named):
        AudioProcessor.parse_options(raw)


def test_candidate_languages_come_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert AudioProcessor.parse_options({"detect_languages": ["PT", "fil"]}).candidates == (
        "pt",
        "tl",
    )
    monkeypatch.setenv("MEDIA_SPEECH_LANGUAGES", "de, en")
    assert AudioProcessor.parse_options({}).candidates == ("de", "en")
    monkeypatch.setenv("MEDIA_SPEECH_LANGUAGES", "de,zz")
    with pytest.raises(InvalidInputError, match="MEDIA_SPEECH_LANGUAGES"):
        AudioProcessor.parse_options({})
