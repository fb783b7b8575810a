"""Text messages through the REAL Node server, end to end, on 2 cores.

Starts queue_svc and the gateway (bench/harness.py's Stack, one SQLite store) and the
Node server in demo mode (tests/helpers/node_server.py): its scripted socket injects
`--messages` text messages with no delay between them, as `messages.upsert` events of
Baileys' shape, through the production handler, outbox, WebSocket link, gateway and
queue_svc, and a resuming Subscribe counts them by WhatsApp id. The figure is messages
per second between the first and the last arrival, for 200 chats and for one chat.
Then the 200-chat run again with the Node server SIGKILLed when 40 % have arrived and
restarted on the same directories: the script replays with the same WhatsApp ids (as
WhatsApp redelivers what was not acknowledged), and every message must arrive exactly
once. Each run also reports the Node server's CPU time (user + system, from /proc) per 1,000
messages. Last line: `RESULT node_path_msgs_per_s=<n> node_path_one_chat_msgs_per_s=<n>
node_kill_lost=<n> node_kill_duplicated=<n> node_cpu_ms_per_1000=<n>` (the last from the
200-chat run).

    .venv/bin/python bench/node_path.py [--messages 20000] [--one-chat-messages 5000]
        [--runs many,one,kill]

NODE_PATH_CPU_PROF=1 starts Node with `--cpu-prof`: one .cpuprofile per Node process
under var/profiles/ (open it in Chrome DevTools, or summarise it with
bench/cpuprofile_top.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp  # noqa: E402

from bench.harness import API_TOKEN, NODE_TOKEN, Stack, TimedConsumer, load_average  # noqa: E402
from tests.helpers.node_server import NodeServer, start_node_server  # noqa: E402
from tests.helpers.processes import free_port  # noqa: E402

BOT = "bench-node"
PROFILES = Path(__file__).resolve().parent.parent / "var" / "profiles"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    """User + system CPU time a process used so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces) start at its closing ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLOCK_TICKS


def node_args() -> list[str]:
    if os.environ.get("NODE_PATH_CPU_PROF") != "1":
        return []
    PROFILES.mkdir(parents=True, exist_ok=True)
    return ["--cpu-prof", f"--cpu-prof-dir={PROFILES}"]


AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def write_script(path: Path, messages: int, chats: int, tag: str) -> set[str]:
    entries = [
        {
            "type": "text",
            "from": f"4917{n % chats:08d}@s.whatsapp.net",
            "id": f"NP{tag}{n:08d}",
            "text": f"message {n} of the Node path benchmark",
            "delay_ms": 0,
        }
        for n in range(messages)
    ]
    # No `message_injected` line per message: printing and reading them cost more than
    # the server being measured.
    path.write_text(json.dumps({"injected_events": False, "bots": {BOT: entries}}))
    return {str(e["id"]) for e in entries}


async def start_bot(api: str) -> None:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.put(f"{api}/bots/{BOT}/config", json={}) as r:
            assert r.status == 200, await r.text()
        async with http.post(f"{api}/bots/{BOT}/start", json={}) as r:
            assert r.status == 200, await r.text()


async def run_once(
    messages: int, chats: int, tag: str, kill_at: float | None, within: float
) -> tuple[float, int, int, float]:
    """(messages per second, lost, duplicated, Node CPU ms per 1,000 messages)."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-node-{tag}-"))
    node_port = free_port()
    stack = Stack(root, free_port())
    stack.extra_env["gateway"] = {
        "NODE_API_URL": f"http://127.0.0.1:{node_port}",
        "NODE_API_TOKEN": "node-api-token",
    }
    ids = write_script(root / "script.json", messages, chats, tag)
    await stack.start("queue_svc")
    await stack.start("gateway")
    consumer = TimedConsumer(stack.queue_address, [BOT])
    consumer.start()

    async def node() -> NodeServer:
        return await start_node_server(
            root / "node",
            root / "script.json",
            gateway_ws_url=f"ws://127.0.0.1:{stack.gateway_port}/ws",
            gateway_token=NODE_TOKEN,
            log_path=root / "node.log",
            port=node_port,
            node_args=node_args(),
        )

    server = await node()
    cpu_before = cpu_ms(server.process.pid)
    others = {"gateway": stack.pid("gateway"), "queue_svc": stack.pid("queue_svc")}
    others_before = {name: cpu_ms(pid) for name, pid in others.items()}
    bench_before = time.process_time()
    try:
        await start_bot(f"http://127.0.0.1:{stack.gateway_port}")
        if kill_at is not None:
            async with asyncio.timeout(within):
                while len(consumer.arrived) < messages * kill_at:
                    consumer.changed.clear()
                    await consumer.changed.wait()
            server.process.send_signal(signal.SIGKILL)
            await server.process.wait()
            print(f"  Node SIGKILLed with {len(consumer.arrived)} of {messages} arrived")
            server = await node()  # resumes the stored session; the script replays
        complete = await consumer.wait_for(ids, within)
        # Before a restart (the kill run) this counts only the second process.
        cpu = cpu_ms(server.process.pid) - (cpu_before if kill_at is None else 0.0)
        # Where the rest of the two cores went, to see which side bounds the rate.
        spent = {name: cpu_ms(pid) - others_before[name] for name, pid in others.items()}
        spent["bench"] = (time.process_time() - bench_before) * 1000
        print(
            "  CPU ms per 1,000 messages besides Node's: "
            + ", ".join(f"{name} {ms * 1000 / messages:.0f}" for name, ms in spent.items())
        )
        arrivals = sorted(t for times in consumer.arrived.values() for t in times[:1])
        rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
        lost = len(ids - consumer.arrived.keys())
        duplicated = sum(len(times) - 1 for times in consumer.arrived.values())
        print(
            f"  {chats} chats: {len(consumer.arrived)} of {messages} arrived"
            f"{'' if complete else ' (timed out)'}, {rate:.0f} msg/s,"
            f" lost {lost}, duplicated {duplicated}, Node CPU {cpu * 1000 / messages:.0f} ms"
            " per 1,000 messages"
        )
        return rate, lost, duplicated, cpu * 1000 / messages
    finally:
        await server.stop()
        await consumer.close()
        await stack.stop_all()


async def run(messages: int, one_chat: int, within: float, runs: set[str]) -> None:
    print(f"load average before: {load_average()}")
    many = one = cpu = 0.0
    lost = duplicated = -1
    if "many" in runs:
        many, _, _, cpu = await run_once(messages, 200, "m", None, within)
        print(f"load average after the 200-chat run: {load_average()}")
    if "one" in runs:
        one, _, _, _ = await run_once(one_chat, 1, "o", None, within)
        print(f"load average after the one-chat run: {load_average()}")
    if "kill" in runs:
        _, lost, duplicated, _ = await run_once(messages, 200, "k", 0.4, within)
    print(f"load average after: {load_average()}")
    print(
        f"RESULT node_path_msgs_per_s={many:.0f} node_path_one_chat_msgs_per_s={one:.0f}"
        f" node_kill_lost={lost} node_kill_duplicated={duplicated}"
        f" node_cpu_ms_per_1000={cpu:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--one-chat-messages", type=int, default=5_000)
    parser.add_argument("--within", type=float, default=300.0)
    parser.add_argument(
        "--runs", default="many,one,kill", help="which runs, of many, one, kill (comma-separated)"
    )
    args = parser.parse_args()
    runs = set(args.runs.split(","))
    if not runs <= {"many", "one", "kill"}:
        parser.error("--runs takes many, one and kill")
    started = time.perf_counter()
    asyncio.run(run(args.messages, args.one_chat_messages, args.within, runs))
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
