"""`make bench`: every benchmark one after the other (never two at once: they share the
2 cores), each as its own process, then `bench/RESULTS.md` with every figure next to the
command that produced it, the targets, and what bounds the ones missed.

Last line: `RESULT text_msgs_per_s=<n> text_vs_echo=<x> text_p99_ms=<x>
media_jobs_per_s=<n> lost=<n> duplicated=<n> rss_mb_per_100k=<n>`.

    .venv/bin/python bench/run_all.py [--quick] [--soak-seconds 600] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = ".venv/bin/python"


@dataclass
class Step:
    title: str
    argv: list[str]
    timeout: float
    output: str = ""
    seconds: float = 0.0
    exit_code: int | None = None
    load_before: str = ""
    load_after: str = ""
    result: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> str:
        return " ".join(self.argv)

    def figure(self, key: str) -> str:
        return self.result.get(key, "n/a")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def run_step(step: Step) -> None:
    print(f"== {step.title}: {step.command}", flush=True)
    step.load_before = _load()
    started = time.perf_counter()
    try:
        done = subprocess.run(
            step.argv,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=step.timeout,
            check=False,
        )
        step.output, step.exit_code = done.stdout, done.returncode
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout
        text = out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
        step.output = text + f"\n(stopped after {step.timeout:.0f} s)"
        step.exit_code = None
    step.seconds = time.perf_counter() - started
    step.load_after = _load()
    print(step.output.rstrip(), flush=True)
    for line in step.output.splitlines():
        if line.startswith("RESULT "):
            step.result = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)


def steps(quick: bool, soak_seconds: int) -> dict[str, Step]:
    s = "3" if quick else "10"
    return {
        "text": Step(
            "Text path vs echo baselines",
            [PY, "bench/text_path.py", "--seconds", s, "--profile", "var/bench-profiles"],
            300,
        ),
        "media": Step("Media path, zero-delay stubs", [PY, "bench/media.py"], 300),
        "media_real": Step(
            "Media path, real processors per kind; 1 vs 2 media_svc replicas",
            [PY, "bench/media_real.py"],
            900,
        ),
        "memory": Step("queue_svc memory", [PY, "bench/queue_memory.py"], 300),
        "dedup": Step("queue_svc dedup memory per bot", [PY, "bench/dedup_memory.py"], 300),
        "node_path": Step("Text through the real Node server", [PY, "bench/node_path.py"], 900),
        "soak": Step(
            "Soak",
            [
                PY,
                "bench/soak.py",
                "--seconds",
                str(min(soak_seconds, 60) if quick else soak_seconds),
            ],
            soak_seconds + 600,
        ),
        "faults": Step(
            "Fault injection", [PY, "bench/faults.py", "--seconds", "20" if quick else "60"], 600
        ),
        "bad_input": Step(
            "Bad input: fuzzer, traversal, authentication", [PY, "bench/bad_input.py"], 300
        ),
        "processors": Step(
            "Media engines (Whisper, OCR, PDF) and worker memory",
            [PY, "bench/processors.py", "--runs", "1"],
            1200,
        ),
        "vision": Step(
            "OCR and PDF processors", [PY, "bench/vision_processors.py", "--images", "3"], 300
        ),
        "store": Step("Store", [PY, "bench/store.py"], 300),
        "queue": Step("In-process queue and loopback gRPC", [PY, "bench/queue.py"], 300),
        "queue_start": Step("StartBot with windows refilled", [PY, "bench/queue_start.py"], 300),
    }


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _verdict(value: str, target: float, at_most: bool) -> str:
    number = _num(value)
    if number is None:
        return "not measured"
    met = number <= target if at_most else number >= target
    return "met" if met else "**missed**"


def _sum(*values: str) -> str:
    numbers = [_num(v) for v in values]
    if any(n is None for n in numbers):
        return "n/a"
    return str(int(sum(n for n in numbers if n is not None)))


def write_results(path: Path, run: dict[str, Step], total_seconds: float) -> dict[str, str]:
    text, media, memory = run["text"], run["media"], run["memory"]
    soak, faults, bad = run["soak"], run["faults"], run["bad_input"]
    final = {
        "text_msgs_per_s": text.figure("text_msgs_per_s"),
        "text_vs_echo": text.figure("text_vs_echo"),
        "text_p99_ms": text.figure("text_p99_ms"),
        "media_jobs_per_s": media.figure("jobs_per_s"),
        "lost": _sum(soak.figure("lost"), faults.figure("lost")),
        "duplicated": _sum(soak.figure("duplicated"), faults.figure("duplicated")),
        "rss_mb_per_100k": memory.figure("rss_mb_per_100k"),
        "dedup_mb_per_100k": run["dedup"].figure("dedup_mb_per_100k"),
        "node_path_msgs_per_s": run["node_path"].figure("node_path_msgs_per_s"),
    }
    rows = [
        ("Text path at saturation, msg/s", final["text_msgs_per_s"], "≥ 5,000", 5000, False, text),
        ("Text path ÷ raw grpc.aio unary echo", final["text_vs_echo"], "≥ 1.0", 1.0, False, text),
        ("Gateway + queue_svc CPU per text message, µs",
         _sum(text.figure("gateway_cpu_us_per_msg"), text.figure("queue_svc_cpu_us_per_msg")),
         "≤ 200", 200, True, text),
        ("Text path p99 at 1,000 msg/s, ms", final["text_p99_ms"], "≤ 20", 20, True, text),
        ("Media jobs/s, stubs", final["media_jobs_per_s"], "≥ 1,000", 1000, False, media),
        ("queue_svc MB per 100,000 messages", final["rss_mb_per_100k"], "≤ 100", 100, True, memory),
        ("Dedup memory, MB per 100,000 provider ids", final["dedup_mb_per_100k"], "≤ 5", 5,
         True, run["dedup"]),
        ("Real Node server, 200 chats, msg/s", final["node_path_msgs_per_s"], "≥ 2,000", 2000,
         False, run["node_path"]),
        ("Real Node server, one chat, msg/s",
         run["node_path"].figure("node_path_one_chat_msgs_per_s"), "≥ 500", 500, False,
         run["node_path"]),
        ("Node SIGKILL: lost", run["node_path"].figure("node_kill_lost"), "0", 0, True,
         run["node_path"]),
        ("Node SIGKILL: duplicated", run["node_path"].figure("node_kill_duplicated"), "0", 0,
         True, run["node_path"]),
        ("Soak: lost", soak.figure("lost"), "0", 0, True, soak),
        ("Soak: duplicated", soak.figure("duplicated"), "0", 0, True, soak),
        ("Soak: max RSS growth after warm-up, %", soak.figure("max_rss_growth_pct"), "≤ 10",
         10, True, soak),
        ("Faults: lost", faults.figure("lost"), "0", 0, True, faults),
        ("Faults: duplicated", faults.figure("duplicated"), "0", 0, True, faults),
        ("Bad input: frames left unanswered", bad.figure("unanswered"), "0", 0, True, bad),
        ("Bad input: services alive after it (1 = yes)", bad.figure("gateway_alive"), "1",
         1, False, bad),
        ("Ten 5 s voice notes with a 100 s one: p95 ÷ without it",
         run["processors"].figure("short_voice_p95_ratio"), "≤ 2.0", 2.0, True,
         run["processors"]),
        ("The same, the 100 s note already running (chunked): p95 ÷ without it",
         run["processors"].figure("long_first_p95_ratio"), "≤ 2.0", 2.0, True,
         run["processors"]),
        ("The same, p95 of each note's placeholder → text ÷ its own processing time",
         run["processors"].figure("short_voice_own_ratio"), "≤ 2.0 (see below)", 2.0, True,
         run["processors"]),
    ]  # fmt: skip
    out = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (`.venv/bin/python bench/run_all.py`); do not edit by hand,",
        "rerun it. Every figure below names the command that produced it; the full output of",
        "each command follows. Benches run one at a time, each in its own processes.",
        "",
        f"- run finished: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {total_seconds / 60:.1f} min"
        " in all",
        f"- machine: {os.cpu_count()} cores, {platform.platform()}, Python"
        f" {platform.python_version()}",
        "- load average (1 / 5 / 15 min) is given before and after each bench: the machine is"
        " shared, and every throughput figure falls with the load of other processes; the CPU"
        " cost per message (text path) is the figure that load changes least.",
        "",
        "## Targets",
        "",
        "| figure | measured | target | verdict | command |",
        "|---|---|---|---|---|",
    ]
    for name, value, target_text, target, at_most, step in rows:
        verdict = _verdict(value, target, at_most)
        out.append(f"| {name} | {value} | {target_text} | {verdict} | `{step.command}` |")
    out += ["", *analysis(run), ""]
    for key, step in run.items():
        status = "ok" if step.exit_code == 0 else f"exit {step.exit_code}"
        out += [
            f"## {step.title}",
            "",
            f"`{step.command}` — {status}, {step.seconds:.0f} s, load average before"
            f" {step.load_before}, after {step.load_after}",
            "",
            "```",
            step.output.rstrip() or "(no output)",
            "```",
            "",
        ]
        if key == "text":
            out += [
                "Profiles: `var/bench-profiles/{gateway,queue_svc}.txt` (py-spy raw collapsed"
                " stacks, 50 Hz, during the saturation phase).",
                "",
            ]
    path.write_text("\n".join(out))
    return final


def _busy(us_per_message: str) -> str:
    """Share of a second a service spends on 1,000 messages at this CPU cost."""
    number = _num(us_per_message)
    return "(not measured)" if number is None else f"{number * 1000 / 1e6:.0%}"


def analysis(run: dict[str, Step]) -> list[str]:
    """What bounds the figures, from this run's numbers."""
    text = run["text"]
    gateway_us = text.figure("gateway_cpu_us_per_msg")
    queue_us = text.figure("queue_svc_cpu_us_per_msg")
    return [
        "## What bounds the figures, and what would close the gaps",
        "",
        "- **Text path throughput** is bound by CPU: the gateway, queue_svc and the bench's"
        " own sender and consumer share the 2 cores. This run measured"
        f" {gateway_us} µs of gateway CPU and {queue_us} µs of queue_svc CPU per message"
        " (`bench/text_path.py`, from /proc/<pid>/stat); 5,000 msg/s needs less than"
        " 400 µs for both together on 2 cores with nothing else running, before the"
        " client's share. Every service runs on uvloop (`EVENT_LOOP`); the gateway decodes"
        " frames with orjson (the strict decoder again only when a frame needs its verdict),"
        " and fills the protobuf message in the same walk that counts the keys"
        " (`services/common/json_fill.py`), validates against per-type plans of plain values,"
        " handles a text frame of a batching connection without a task of its own (its ack"
        " is encoded from its values and queued from the batch's callback); queue_svc takes"
        " the gateway's text as `AddMessages` batches of up to 512, writes a batch of new"
        " rows with one `executemany` and one durability future, and streams ready messages"
        " to Subscribe in batches (`max_batch`). The py-spy profiles in the text path output"
        " show what remains: in the gateway parsing and validating each frame and the"
        " WebSocket writes of the acks; in queue_svc the SQLite writes (each row dirties a"
        " leaf of three indexes) and gRPC's own event-loop work.",
        "  To close the rest: running several gateway processes (`SO_REUSEPORT`, Node"
        " opening one socket per"
        " process) on a machine with the cores for them. A raw grpc.aio unary echo runs at"
        " only a few thousand calls/s here, which is why the gateway batches text into one"
        " `AddMessages` call: the text path may beat the one-call-per-message floor, and"
        " the ratio says how far the batching carries it.",
        "- **The real Node server's path** adds Node's own CPU to the gateway's and"
        " queue_svc's on the same 2 cores (the figures per 1,000 messages are in its output)."
        " Node and the gateway agree on frame batches at the handshake (`Chatbot-Wire-Batch`):"
        " one WebSocket message carries one event-loop turn's frames, and the acks come back"
        " the same way; Node encodes frames from a plan made once, and its outbox commits a"
        " batch of frames with one fsync. Real frames carry a message context that the text"
        " bench's frames do not, so queue_svc spends more per message here.",
        "- **p99 at 1,000 msg/s** follows from the same CPU cost: at 1,000 msg/s the gateway"
        f" is busy {_busy(gateway_us)} of every second and queue_svc {_busy(queue_us)}, so a"
        " frame often waits behind a batch in progress; the 0.5 ms batching window adds at"
        " most 0.5 ms. SQLite's checkpoints (copying the write-ahead log back into the file,"
        " with an fsync) run on a thread of their own rather than inside a commit, where they"
        " held a batch for milliseconds. Load from other processes on the shared cores shows"
        " up directly in the tail (compare the load averages next to the figure).",
        "- **Media jobs/s with zero-delay stubs** is bound by queue_svc's and media_svc's"
        " CPU per job: the placeholders of one event-loop turn go to queue_svc as one"
        " InjectPlaceholders call and the results as one UpdateByMediaIds call (the bench"
        " injects as the gateway does; `--unary` shows the one-call-per-job cost); media_svc"
        " claims up to 16 jobs per pool in one store round trip, hands each event-loop"
        " turn's store operations and file calls (the scratch copy is a hard link on one"
        " filesystem) to their threads in one hand-over."
        " What remains per job: gRPC's own event-loop work in queue_svc (the"
        " largest share of its samples), the job's completion and deletion writes, the"
        " placeholder's and the result's message writes, and the thread hand-offs between"
        " the event loops and the SQLite and file threads (each one a GIL hand-over).",
        "- **Media with the real processors** is bound by the engines, not the pipeline:"
        " pickup stays at a few milliseconds while OCR takes seconds per image and Whisper"
        " a fraction of the audio's length (`bench/media_real.py`, `bench/processors.py`)."
        " A second media_svc replica on the same 2 cores does not help a CPU-bound pool:"
        " both replicas compete for the same cores, and each replica's warmed engines cost"
        " memory; replicas pay off on separate nodes (Kubernetes spreads them).",
        "- **queue_svc memory** is Python objects per queued message (the message dataclass,"
        " its strings, the per-correspondent deque and the dedup memory of provider ids);"
        " `__slots__` everywhere and interning correspondent and sender ids are the levers.",
        "- **Soak RSS growth** of queue_svc is two bounded memories filling: the"
        " correspondents' windows (up to 200 messages each; the soak's 3 bots x 40"
        " correspondents hold at most 24,000 messages, about 0.8 KB each, full after about"
        " two minutes) and each bot's memory of durable provider ids"
        " (`QUEUE_SVC_DEDUP_CAPACITY`, 2,000 ids per bot; ids not yet durable are kept apart"
        " until their write, and older ones are answered by the store), full after 2,000"
        " messages per bot. Growth flattens once both are full, so a run shorter than that"
        " measures the filling, not a leak.",
        "- **Voice notes behind a long one** (`bench/processors.py`): the Audio pool claims"
        " the cheapest expected job first (its claim order is arrival + size times the pool's"
        " seconds per MiB), and a note longer than `MEDIA_AUDIO_CHUNK_SECONDS` is transcribed"
        " a chunk at a time, giving its slot to a cheaper waiting job between chunks. The"
        " verdicts compare the ten short notes' p95 with the same ten notes sent alone. The"
        " issue's literal ratio (each note's wait ÷ its own processing time) is printed too:"
        " with one slot, ten notes accepted together finish one after another, so the last"
        " waits for the nine before it, and that ratio is about 10 under any scheduler, long"
        " note or not.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, to try the harness")
    # The soak: 10 minutes, at least 100,000 frames per bot (bench/soak.py's rate).
    parser.add_argument("--soak-seconds", type=int, default=600)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--only", nargs="*", help="bench keys to run (default: all)")
    args = parser.parse_args()
    started = time.perf_counter()
    run = steps(args.quick, args.soak_seconds)
    for key, step in run.items():
        if args.only and key not in args.only:
            step.output = "(not run)"
            continue
        run_step(step)
    final = write_results(args.out, run, time.perf_counter() - started)
    print(f"wrote {args.out}")
    failed = [s.command for s in run.values() if s.output != "(not run)" and s.exit_code != 0]
    for command in failed:
        print(f"FAILED (see RESULTS.md): {command}")
    # Last, even after a failure: the RESULT line is what callers read; n/a marks a gap.
    print("RESULT " + " ".join(f"{k}={v}" for k, v in final.items()), flush=True)


if __name__ == "__main__":
    main()
