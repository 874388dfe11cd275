"""What ``bench/fleet_load.py`` measured, as it prints it and as ``--json`` writes it.

A phase's figures come from the client processes (:class:`PhaseResult`: latencies, counts, errors, the clients' own
CPU) and from ``/proc`` in the bench process (:class:`fleet_load_report.Phase`: the CPU of the server's process tree,
supervisor and workers, and of PostgreSQL's, over the same wall time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.proc_stat import TreeSample

LATE_LIMIT_S = 1.0  # heartbeats starting later than this (p99) mean the client fell behind its schedule
RATE_SHORTFALL = 0.9  # acknowledged heartbeats below this share of the offered rate: the load was not offered
BUSY_CLIENT = 0.9  # a client using this share of a core (running or waiting for one) bounds the figures


@dataclass
class PhaseResult:
    event_latencies: list[float] = field(default_factory=list)
    heartbeat_latencies: list[float] = field(default_factory=list)
    events_stored: int = 0  # 201 and stored (on the bare app: 201)
    events_duplicate: int = 0  # 200, stored: false
    events_unsent: int = 0  # left when the phase reached --max-seconds
    heartbeats_scheduled: int = 0
    heartbeat_lateness: list[float] = field(default_factory=list)  # actual send start minus scheduled
    event_errors: int = 0
    heartbeat_errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    nonce_retries: int = 0
    events_seconds: float = 0.0  # first request to last event response
    heartbeat_seconds: float = 0.0  # the heartbeat schedule's span
    sign_seconds: float = 0.0  # proof signing, inside the phase
    cpu_seconds: float = 0.0  # this client process, over ``wall``
    runqueue_seconds: float = 0.0  # runnable but waiting for a core (other processes on the machine), over ``wall``
    wall: float = 0.0  # start to the last response of the phase


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values`` in milliseconds; NaN if empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Phase:
    name: str
    results: list[PhaseResult]
    wall: float
    server: TreeSample  # CPU used by the server's process tree during the phase (supervisor and workers)
    db: TreeSample | None  # PostgreSQL's process tree (None on SQLite: the server's own process writes the file)
    load: float  # the machine's 1-minute load average at the end of the phase (other work disturbs the figures)
    workers: int = 1  # server worker processes (children of the server process when > 1)

    @property
    def events_ok(self) -> int:
        return sum(r.events_stored + r.events_duplicate for r in self.results)

    @property
    def events_seconds(self) -> float:
        return max(r.events_seconds for r in self.results)

    @property
    def events_per_s(self) -> float:
        return self.events_ok / self.events_seconds if self.events_seconds else 0.0

    @property
    def heartbeats_ok(self) -> int:
        return sum(len(r.heartbeat_latencies) for r in self.results)

    @property
    def heartbeats_per_s(self) -> float:
        return sum(len(r.heartbeat_latencies) / r.heartbeat_seconds for r in self.results if r.heartbeat_seconds)

    @property
    def errors(self) -> int:
        return sum(r.event_errors + r.heartbeat_errors for r in self.results)

    def errors_of(self, kind: str) -> int:
        return sum(getattr(r, f"{kind}_errors") for r in self.results)

    def latencies(self, kind: str) -> list[float]:
        return [x for r in self.results for x in getattr(r, f"{kind}_latencies")]

    def lateness(self) -> list[float]:
        return [x for r in self.results for x in r.heartbeat_lateness]

    def cpu(self) -> dict[str, dict[str, Any]]:
        """CPU seconds, % of one core and % waiting for a core, per component: server, postgres, clients, total."""

        def row(seconds: float, waiting: float, **detail: Any) -> dict[str, Any]:
            return {"seconds": round(seconds, 3), "percent_of_core": round(100 * seconds / self.wall, 1),
                    "waiting_percent": round(100 * waiting / self.wall, 1), **detail}  # fmt: skip

        out = {"server": row(self.server.total, self.server.runqueue, processes=1 + len(self.server.children))}
        if self.workers > 1:
            out["server"]["supervisor_seconds"] = round(self.server.root, 3)
            out["server"]["worker_seconds"] = [round(s, 3) for s in self.server.children.values()]
        if self.db is not None:
            out["postgres"] = row(self.db.total, self.db.runqueue, processes=1 + len(self.db.children))
        clients = [row(r.cpu_seconds, r.runqueue_seconds) for r in self.results]
        out["clients"] = row(sum(r.cpu_seconds for r in self.results), sum(r.runqueue_seconds for r in self.results))
        out["clients"]["per_client_percent"] = [c["percent_of_core"] for c in clients]
        total = sum(v["seconds"] for v in out.values())
        out["total"] = row(total, sum(v["waiting_percent"] for v in out.values()) * self.wall / 100)
        return out

    def summary(self) -> dict[str, Any]:
        def latency(kind: str) -> dict[str, float]:
            lat = self.latencies(kind)
            return {f"p{q}": round(pct(lat, q), 1) for q in (50, 95, 99)} | {"max": round(pct(lat, 100), 1)}

        return {
            "wall_seconds": round(self.wall, 2),
            "events_ok": self.events_ok,
            "events_per_s": round(self.events_per_s, 1),
            "event_latency_ms": latency("event"),
            "event_errors": self.errors_of("event"),
            "heartbeats_ok": self.heartbeats_ok,
            "heartbeats_per_s": round(self.heartbeats_per_s, 1),
            "heartbeat_latency_ms": latency("heartbeat"),
            "heartbeat_errors": self.errors_of("heartbeat"),
            "heartbeat_lateness_p99_ms": round(pct(self.lateness(), 99), 1),
            "nonce_retries": sum(r.nonce_retries for r in self.results),
            "proof_signing_seconds": round(sum(r.sign_seconds for r in self.results), 2),
            "load_average": round(self.load, 2),
            "cpu": self.cpu(),
            "error_samples": [s for r in self.results for s in r.error_samples],
        }


def print_latency_table(phases: list[Phase]) -> None:
    print(f"{'':<14}{'':<11}{'ok':>7}{'per s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'errors':>8}")
    for phase in phases:
        for kind, count, rate in (
            ("events", phase.events_ok, phase.events_per_s),
            ("heartbeats", phase.heartbeats_ok, phase.heartbeats_per_s),
        ):
            lat = phase.latencies("event" if kind == "events" else "heartbeat")
            errors = phase.errors_of(kind[:-1])
            print(
                f"{phase.name if kind == 'events' else '':<14}{kind:<11}{count:>7}{rate:>9.1f}{pct(lat, 50):>9.1f}"
                f"{pct(lat, 95):>9.1f}{pct(lat, 99):>9.1f}{pct(lat, 100):>9.1f}{errors:>8}"
            )


def print_cpu(phase: Phase, cores: int) -> None:
    """One line per component: CPU seconds, % of one core, % waiting for a core, and what it is made of."""
    cpu = phase.cpu()
    print(
        f"{phase.name}: {phase.wall:.1f} s, load average {phase.load:.1f}; heartbeat send lateness p99"
        f" {pct(phase.lateness(), 99):.0f} ms; nonce retries {sum(r.nonce_retries for r in phase.results)};"
        f" proof signing {sum(r.sign_seconds for r in phase.results):.1f} s (clients)"
    )
    print(f"  {'CPU':<34}{'seconds':>9}{'% of a core':>13}{'waiting':>9}   ({cores} cores = {100 * cores}%)")
    server = cpu["server"]
    if phase.workers > 1:
        workers = ", ".join(f"{s:.1f}" for s in server["worker_seconds"])
        label, detail = f"fleet server ({phase.workers} workers)", f"supervisor {server['supervisor_seconds']:.1f} s;"
        detail += f" workers {workers} s"
        if len(server["worker_seconds"]) != phase.workers:  # a worker ended (and was restarted) during the phase
            detail += f" ({len(server['worker_seconds'])} worker processes at the end: see the server log)"
    else:
        label, detail = "fleet server (1 process)" if phase.name != "bare aiohttp" else "bare aiohttp", ""
    rows = [(label, server, detail)]
    if "postgres" in cpu:
        rows.append(("postgres (all its processes)", cpu["postgres"], f"{cpu['postgres']['processes']} processes"))
    per_client = ", ".join(f"{p:.0f}%" for p in cpu["clients"]["per_client_percent"])
    rows.append((f"client(s) ({len(phase.results)})", cpu["clients"], f"each {per_client}"))
    rows.append(("total", cpu["total"], ""))
    for name, r, detail in rows:
        print(f"  {name:<34}{r['seconds']:>9.1f}{r['percent_of_core']:>12.0f}%{r['waiting_percent']:>8.0f}%   {detail}")


def schedule_warnings(phase: Phase, devices: int, interval: float, fleet_phase: bool) -> list[str]:
    """Why this phase's figures are not at the load it claims (the client fell behind its heartbeat schedule; in
    the fleet phase also: a client ran out of CPU, or many requests were sent twice for an expired nonce), one
    sentence each; empty when the offered load was offered."""
    out = []
    late = pct(phase.lateness(), 99) / 1000
    if late > LATE_LIMIT_S:
        out.append(
            f"{phase.name}: heartbeats started up to {late:.1f} s late (p99): the client(s) could not keep"
            f" {devices} devices on their {interval:g} s schedule (too many devices for them: use --clients N;"
            " or requests piling up behind a saturated server)"
        )
    offered = devices / interval
    expected = sum(r.heartbeat_seconds for r in phase.results) / len(phase.results) * offered
    if expected >= 50 and phase.heartbeats_per_s < RATE_SHORTFALL * offered:
        out.append(
            f"{phase.name}: {phase.heartbeats_per_s:.1f} heartbeats/s acknowledged of {offered:.1f}/s offered:"
            " the heartbeat load was not applied"
        )
    retries, requests = sum(r.nonce_retries for r in phase.results), phase.events_ok + phase.heartbeats_ok
    if fleet_phase and retries > 0.01 * max(1, requests):
        out.append(
            f"{phase.name}: {retries} requests were sent twice (401 use_nonce: the device's nonce had expired, as"
            " after a setup longer than the server's nonce_ttl_seconds, WARDSIGHT_SERVER_NONCE_TTL_SECONDS)"
        )
    for i, r in enumerate(phase.results if fleet_phase else []):
        busy = (r.cpu_seconds + r.runqueue_seconds) / r.wall if r.wall else 0.0
        if busy >= BUSY_CLIENT:
            out.append(
                f"{phase.name}: client {i} used {100 * busy:.0f}% of a core (running or waiting for one):"
                " the figures are bounded by the client, not only by the server"
            )
    return out
