"""`make up`: the whole stack on the embedded store, for a real WhatsApp account.

Writes `<UP_DIR>/up.env` (ports, paths and tokens; the tokens are generated once and
kept in `<UP_DIR>/secrets.env`, mode 0600), prints the addresses, the tokens and the
next steps, then runs every process of the `Procfile` under honcho, bound to loopback.
Ctrl-C (SIGINT) or SIGTERM stops everything cleanly. Any variable already set in the
environment wins over the defaults below (e.g. `GATEWAY_PORT=9000 make up`).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TOKENS = ("GATEWAY_TOKEN", "GATEWAY_API_TOKEN", "NODE_API_TOKEN")


def write_private(path: Path, text: str) -> None:
    """Writes `text` to `path` readable by its owner only (0600) from the first byte:
    created with that mode, and an existing file's mode is narrowed before writing."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(text)


def _secrets(directory: Path) -> dict[str, str]:
    path = directory / "secrets.env"
    found: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in TOKENS and value:
                found[key] = value
    missing = [key for key in TOKENS if key not in found]
    if missing:
        found.update({key: secrets.token_hex(24) for key in missing})
        write_private(path, "".join(f"{key}={found[key]}\n" for key in TOKENS))
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)  # kept from an older run that left it readable by others
    return found


def environment(directory: Path) -> dict[str, str]:
    """Every process's settings: defaults, then the kept tokens, then the caller's env."""
    values = {
        "STORE_BACKEND": "sqlite",
        "SQLITE_PATH": str(directory / "chatbot.sqlite3"),
        "MEDIA_STAGING_DIR": str(directory / "staging"),
        "AUTH_DIR": str(directory / "node" / "auth"),
        "OUTBOX_DIR": str(directory / "node" / "outbox"),
        "SENT_KEYS_DIR": str(directory / "node" / "sent_keys"),
        "QUEUE_SVC_HOST": "127.0.0.1",
        "QUEUE_SVC_PORT": "50051",
        "QUEUE_SVC_METRICS_PORT": "9102",
        "MEDIA_SVC_HOST": "127.0.0.1",
        "MEDIA_SVC_PORT": "50052",
        "MEDIA_SVC_METRICS_PORT": "9103",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "8090",
        "GATEWAY_METRICS_PORT": "9101",
        "NODE_HOST": "127.0.0.1",
        "NODE_PORT": "8091",
        "RELAY_HOST": "127.0.0.1",
        "RELAY_PORT": "9104",
        # Both the Python services and the Node server read it (lower case for Node).
        "LOG_LEVEL": "info",
        "PYTHONUNBUFFERED": "1",
    }
    values.update(_secrets(directory))
    values.update({key: os.environ[key] for key in values if os.environ.get(key)})
    # Anything else set in the environment (MEDIA_POOLS, MONGODB_URI, NODE_DEMO_SCRIPT …)
    # reaches the processes as it is: honcho layers this file over the environment.
    values.setdefault("QUEUE_SVC_ADDRESS", f"127.0.0.1:{values['QUEUE_SVC_PORT']}")
    values.setdefault("NODE_API_URL", f"http://127.0.0.1:{values['NODE_PORT']}")
    values.setdefault("GATEWAY_WS_URL", f"ws://127.0.0.1:{values['GATEWAY_PORT']}/ws")
    values.setdefault("RELAY_GATEWAY_URL", f"http://127.0.0.1:{values['GATEWAY_PORT']}")
    values.setdefault("RELAY_GATEWAY_API_TOKEN", values["GATEWAY_API_TOKEN"])
    if os.environ.get("QUEUE_SVC_ADDRESS"):
        values["QUEUE_SVC_ADDRESS"] = os.environ["QUEUE_SVC_ADDRESS"]
    return values


def banner(env: dict[str, str]) -> str:
    api = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
    metrics = " ".join(
        f":{env[key]}/metrics"
        for key in ("GATEWAY_METRICS_PORT", "QUEUE_SVC_METRICS_PORT", "MEDIA_SVC_METRICS_PORT")
    )
    auth = f'-H "Authorization: Bearer {env["GATEWAY_API_TOKEN"]}"'
    demo = (
        "\n  (NODE_DEMO_SCRIPT is set: WhatsApp is replaced by a script)"
        if os.environ.get("NODE_DEMO_SCRIPT")
        else ""
    )
    return f"""
make up: the stack runs on loopback, store {env["SQLITE_PATH"]}{demo}
  gateway (lifecycle API, Node WebSocket)  {api}
  queue_svc (gRPC, Subscribe)              {env["QUEUE_SVC_ADDRESS"]}
  media_svc (gRPC, operator surface)       127.0.0.1:{env["MEDIA_SVC_PORT"]}
  Node server (Baileys)                    {env["NODE_API_URL"]}
  metrics (gateway, queue_svc, media_svc)  {metrics}
  tokens (kept in {Path(env["SQLITE_PATH"]).parent / "secrets.env"}):
    GATEWAY_API_TOKEN={env["GATEWAY_API_TOKEN"]}
    NODE_API_TOKEN={env["NODE_API_TOKEN"]}

Start a bot (its id is yours to choose, e.g. the phone number), then scan the QR code
printed below by `pairing` with WhatsApp (Settings → Linked devices → Link a device):
  curl -X PUT {api}/bots/my-bot/config {auth} -H 'Content-Type: application/json' \\
       -d '{{"media_storage_quota_gb": 1, "languages": ["en"]}}'
  curl -X POST {api}/bots/my-bot/start {auth}
  curl {api}/bots/my-bot {auth}
Point the webhook relay at your bot builder (n8n, Typebot, Dify …): it POSTs every
message, signed with the secret, and sends a reply found in the response back through
WhatsApp (see the README, "webhook relay"). PUT replaces the whole configuration:
  curl -X PUT {api}/bots/my-bot/config {auth} -H 'Content-Type: application/json' \\
       -d '{{"media_storage_quota_gb": 1, "languages": ["en"],
            "webhook_url": "https://builder.example/hook", "webhook_secret": "<secret>"}}'
A builder on this machine or your network is refused as an internal address unless you
allow it: OUTBOUND_ALLOW_HOSTS=localhost (host names, IPs or CIDRs) before `make up`.
Or read what the bot receives yourself: gRPC Subscribe on {env["QUEUE_SVC_ADDRESS"]}; reply:
  curl -X POST {api}/bots/my-bot/messages {auth} -H 'Idempotency-Key: <unique per message>' \\
       -H 'Content-Type: application/json' -d '{{"correspondent_id": "<jid>", "text": "hi"}}'
Ctrl-C stops everything.
"""


def prepare(directory: Path) -> tuple[dict[str, str], Path]:
    """Every process's settings, written to `<directory>/up.env` (0600: it holds the
    tokens); returns them and the file."""
    (directory / "staging").mkdir(parents=True, exist_ok=True)
    env = environment(directory)
    env_file = directory / "up.env"
    write_private(env_file, "".join(f"{key}={value}\n" for key, value in env.items()))
    return env, env_file


def main() -> int:
    # Everything made from here on (the store, Node's session keys, staged media, logs)
    # is the invoking user's alone; the processes inherit the mask.
    os.umask(0o077)
    directory = Path(os.environ.get("UP_DIR", str(REPO / "var" / "up"))).resolve()
    env, env_file = prepare(directory)
    print(banner(env), flush=True)
    honcho = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "honcho"),
            "--no-colour",
            "-f",
            str(REPO / "Procfile"),
            "-d",
            str(REPO),
            "-e",
            str(env_file),
            "start",
        ],
        cwd=REPO,
    )

    def forward(signum: int, _frame: object) -> None:
        honcho.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    code = honcho.wait()
    print(f"make up: stopped (honcho exit {code})", flush=True)
    return 0 if code in (0, -signal.SIGINT, 130) else code


if __name__ == "__main__":
    sys.exit(main())
