"""Peers benchmark (issue 14): each tool's whole command, as a user runs it, on the same data.

    .venv/bin/python benchmarks/peers.py                      # 1M rows, every pair, task and tool
    .venv/bin/python benchmarks/peers.py --rows 10000000 --pairs duckdb-duckdb --tasks diff100 \\
        --tools ours reladiff --hash-mode canonical         # the cross-engine (canonical) 10M case

Peers live in virtual environments this script creates under `--bench-dir`
(`$OMBUDSMAN_BENCH_DIR`, default /tmp/ombudsman-peers/venvs/<peer>), never in ours:
reladiff (`reladiff[duckdb,postgresql]`), Soda (`soda-core-postgres` + `soda-core-duckdb`), DVT
(`google-pso-data-validator`). A peer that cannot install is reported as such and skipped.
Soda's venv gets our DuckDB version on top (soda-core-duckdb pins duckdb<1.1, which cannot read
files written by DuckDB 2), and runs with its anonymous usage statistics off (no route here).

Tasks (data from benchmarks/validation.py and benchmarks/comparison.py, built once and kept):
  columns   column checks on fact_sales (count, nulls, min/max/sum of the NUMERIC columns,
            uniqueness of the key, FK to dim_customer), both sides
  diff100   row diff of a 10-column table with 100 planted differences (30 missing, 30 extra,
            40 changed)
  diff0     row diff of identical tables
Pairs: postgresql-postgresql (one throwaway PostgreSQL, two databases), duckdb-duckdb (two
files), postgresql-duckdb (cross-engine). Each tool runs where it can: DVT has no DuckDB, Soda
checks one data source per scan (so "both sides" is two scans) and has no row diff.

Ours is the `ombudsman` command as a subprocess (`ombudsman run pipelines` / `ombudsman run
compare`), as installed (no PREFECT_API_URL), in these modes (`--modes`):
  warm       the shared local Prefect server and the warm execution service of its Prefect home
             already run (one unmeasured command starts them): every later command is a thin
             client (docs/local-service.md)
  first      a fresh Prefect home for every run: the command starts the server and the service
             (stopped again with `ombudsman server stop` after each run, not timed)
  api        PREFECT_API_URL set to a Prefect server the benchmark started: the job runs in the
             command's process (the behaviour of a team's server, and of `warm` before the service)
  temporary  `--no-daemon`: Prefect's temporary server started by each command (the behaviour
             before the shared server; its start-up wait raised from 20 s to 600 s) Each case runs `--runs` times
(default 3), interleaved; the table gives min/median/max wall seconds, the differences found,
peak RSS and the ratio to the fastest peer's median, with the goals: ours warm <= 0.5x the
fastest peer, installed <= 1x, and (row diff, 100 differences, canonical hash) <= 0.2x reladiff.

Peak RSS ("peak MiB") is the largest process's peak resident set (`VmHWM` of /proc/<pid>/status)
among the command and its descendants, and for ours the execution service's forked job processes
(descendants of the service pid in `$PREFECT_HOME/ombudsman-exec.json`; the service itself, up
before the command, is not counted). A thread finds the tree by the parent pids of /proc/*/stat
and reads each member's VmHWM every 50 ms; the kernel keeps the high-water mark, so only a process
that lives less than one interval can be missed, and a process that grows in its last 50 ms is
under-counted by that growth (one scan of /proc costs ~2 ms with 70 processes: ~4% of one core).
Not ru_maxrss: exec keeps the peak of the process it replaced, so a
child forked from this (large) benchmark process reports this process's size, and the warm
service's job process is not a child of the command at all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import comparison as cmp_bench  # noqa: E402  (the row-diff data, reladiff's command)
import validation as val_bench  # noqa: E402  (the column-check data and pipeline)
from prefect_ombudsman.execservice import STATE_FILE, is_service_process  # noqa: E402

PEERS = {
    "reladiff": ["reladiff[duckdb,postgresql]"],
    "soda": ["soda-core-postgres", "soda-core-duckdb"],
    "dvt": ["google-pso-data-validator"],
}
PAIRS = ["postgresql-postgresql", "duckdb-duckdb", "postgresql-duckdb"]
TASKS = ["columns", "diff100", "diff0"]
TOOLS = ["ours", "reladiff", "soda", "dvt"]
FACT_COLUMNS = ["sales_key", "customer_key", "sale_date", "quantity", "amount", "note"]
NUMERIC = ["quantity", "amount"]


# ----------------------------------------------------------------------------- peers' venvs


def ensure_peer(bench_dir: Path, name: str) -> tuple[Path | None, str]:
    """The peer's bin folder (its venv created and installed on first use), or None and why."""
    venv = bench_dir / "venvs" / name
    marker = venv / ".installed"
    if marker.exists():
        return venv / "bin", marker.read_text().strip()
    venv.parent.mkdir(parents=True, exist_ok=True)
    print(f"# installing {name} into {venv} ...", flush=True)
    import duckdb

    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "pip"), "install", "-q", *PEERS[name]],
    ]
    if name == "soda":  # soda-core-duckdb pins duckdb<1.1, which cannot open our DuckDB files
        steps.append([str(venv / "bin" / "pip"), "install", "-q", f"duckdb=={duckdb.__version__}"])
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [x for x in proc.stderr.splitlines() if "WARNING: Location" not in x]
            return None, f"cannot install: {(lines or ['?'])[-1][:160]}"
    freeze = subprocess.run(
        [str(venv / "bin" / "pip"), "freeze"], capture_output=True, text=True
    ).stdout
    wanted = {p.split("[")[0].lower() for p in PEERS[name]} | {"duckdb"}
    versions = " ".join(
        line for line in freeze.splitlines() if line.split("==")[0].lower() in wanted
    )
    marker.write_text(versions)
    return venv / "bin", versions


# ----------------------------------------------------------------------------- data


@dataclass
class Data:
    """Connection URLs per pair and task family (SQLAlchemy style: postgresql+psycopg / duckdb)."""

    columns: dict[str, tuple[str, str]] = field(default_factory=dict)
    diff: dict[str, tuple[str, str]] = field(default_factory=dict)


def build_data(
    bench_dir: Path, pg_url: str | None, n: int, pairs: list[str], tasks: list[str]
) -> Data:
    data = Data()
    engines = {e for p in pairs for e in p.split("-")}
    urls: dict[str, dict[str, tuple[str, str]]] = {"columns": {}, "diff": {}}
    if "columns" in tasks:
        if "duckdb" in engines:
            folder = bench_dir / "data" / "columns"
            folder.mkdir(parents=True, exist_ok=True)
            if not all((folder / f"{s}_{n}.duckdb").exists() for s in ("src", "tgt")):
                val_bench.build_duckdb(folder, n)
            urls["columns"]["duckdb"] = tuple(  # type: ignore[assignment]
                f"duckdb:///{folder / f'{s}_{n}.duckdb'}" for s in ("src", "tgt")
            )
        if "postgresql" in engines and pg_url:
            urls["columns"]["postgresql"] = val_bench.build_postgres(pg_url, n)
    if {"diff100", "diff0"} & set(tasks):
        if "duckdb" in engines:
            folder = bench_dir / "data" / "diff"
            folder.mkdir(parents=True, exist_ok=True)
            urls["diff"]["duckdb"] = cmp_bench.build_duckdb(folder, n)
        if "postgresql" in engines and pg_url:
            urls["diff"]["postgresql"] = cmp_bench.build_postgres(pg_url, n)
    for family, target in (("columns", data.columns), ("diff", data.diff)):
        for pair in pairs:
            src_kind, tgt_kind = pair.split("-")
            if src_kind in urls[family] and tgt_kind in urls[family]:
                target[pair] = (urls[family][src_kind][0], urls[family][tgt_kind][1])
    return data


# ----------------------------------------------------------------------------- commands


@dataclass
class Case:
    task: str
    pair: str
    tool: str  # e.g. "ours (warm)", "reladiff"
    argv: list[str]
    parse: Any  # (stdout, stderr, returncode) -> found
    env: dict[str, str] | None = None
    peer: bool = True
    max_runs: int | None = None  # fewer runs than the others (ours as installed, --installed-runs)
    fresh_home: bool = False  # a new PREFECT_HOME per run (ours, first run)
    runs: list[tuple[float, float, str]] = field(default_factory=list)  # wall, MiB, found


def _pg_parts(url: str) -> dict[str, str]:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return {
        "host": u.host or "127.0.0.1",
        "port": str(u.port or 5432),
        "user": u.username or "postgres",
        "database": u.database or "postgres",
    }


def _duck_path(url: str) -> str:
    return url.removeprefix("duckdb:///")


def ours_found(out: str, err: str, code: int) -> str:
    try:
        summary = json.loads(out[out.index("{") :])
    except ValueError:
        return "error: " + (err.strip().splitlines() or ["?"])[-1][:120]
    results = [op.get("result") or {} for op in summary.get("operations", [])]
    if results and "missing_in_target" in results[0]:
        r = results[0]
        return f"{r['missing_in_target']}/{r['extra_in_target']}/{r['changed']}"
    return f"{summary.get('completed', '?')} ok / {summary.get('failed', '?')} failed"


def soda_found(out: str, err: str, code: int) -> str:
    scans = out.count("Scan summary")
    good = out.count("All is good")
    if not scans:
        return "error: " + ((err or out).strip().splitlines() or ["?"])[-1][:120]
    return f"{good}/{scans} scans all pass"


def dvt_found(out: str, err: str, code: int) -> str:
    if code != 0 and "validation_status" not in out:
        return "error: " + ((err or out).strip().splitlines() or ["?"])[-1][:120]
    fails = sum(1 for line in out.splitlines() if '"fail"' in line or ",fail," in line)
    return f"{fails} failing"


def soda_env(bench_dir: Path) -> dict[str, str]:
    """Soda with its anonymous usage statistics off (~/.soda/config.yml of a scratch HOME): this
    machine has no route to its collector, whose retries would be timed otherwise."""
    home = bench_dir / "soda-home"
    (home / ".soda").mkdir(parents=True, exist_ok=True)
    (home / ".soda" / "config.yml").write_text("send_anonymous_usage_stats: false\n")
    return {**os.environ, "HOME": str(home)}


def soda_files(bench_dir: Path, pair: str, urls: tuple[str, str]) -> tuple[Path, Path]:
    folder = bench_dir / "soda" / pair
    folder.mkdir(parents=True, exist_ok=True)
    config = []
    for side, url in zip(("src", "tgt"), urls, strict=True):
        if url.startswith("duckdb"):
            config.append(
                f"data_source {side}:\n  type: duckdb\n  path: {_duck_path(url)}\n  read_only: true\n"
            )
        else:
            p = _pg_parts(url)
            config.append(f"data_source {side}:\n  type: postgres\n  host: {p['host']}\n  port: \"{p['port']}\"\n"
                          f"  username: {p['user']}\n  password: ''\n  database: {p['database']}\n  schema: public\n")  # fmt: skip
    (folder / "configuration.yml").write_text("".join(config))
    checks = ["row_count > 0"]
    checks += [f"missing_count({c}) >= 0" for c in FACT_COLUMNS]
    for c in NUMERIC:
        checks += [f"min({c}) >= 0", f"max({c}) > 0", f"sum({c}) > 0"]
    checks += [
        "duplicate_count(sales_key) = 0",
        "values in (customer_key) must exist in dim_customer (customer_key)",
    ]
    (folder / "checks.yml").write_text(
        "checks for fact_sales:\n" + "".join(f"  - {c}\n" for c in checks)
    )
    return folder / "configuration.yml", folder / "checks.yml"


def dvt_setup(bin_dir: Path, bench_dir: Path, urls: tuple[str, str]) -> dict[str, str]:
    """DVT's connections (src, tgt) in its own config home; returns the env to run it with."""
    env = {**os.environ, "PSO_DV_CONFIG_HOME": str(bench_dir / "dvt-config")}
    for name, url in zip(("src", "tgt"), urls, strict=True):
        p = _pg_parts(url)
        subprocess.run([str(bin_dir / "data-validation"), "connections", "add", "--connection-name", name,
                        "Postgres", "--host", p["host"], "--port", p["port"], "--user", p["user"],
                        "--password", "unused", "--database", p["database"]],
                       env=env, capture_output=True, check=True)  # fmt: skip
    return env


def ours_project(bench_dir: Path, pair: str, urls: tuple[str, str]) -> tuple[Path, str]:
    root = bench_dir / "projects"
    slug = "bench_" + pair.replace("-", "_")
    (root / slug / "pipelines").mkdir(parents=True, exist_ok=True)
    (root / slug / "project.yaml").write_text(
        f"name: {slug}\nsource: {urls[0]}\ntarget: {urls[1]}\n"
    )
    (root / slug / "pipelines" / "columns.yaml").write_text(val_bench.PIPELINE)
    return root, slug


def make_cases(
    args: argparse.Namespace, data: Data, peers: dict[str, Path | None], ours_env: dict[str, dict]
) -> list[Case]:
    ombudsman = str(Path(sys.executable).parent / "ombudsman")
    cases: list[Case] = []
    for pair in args.pairs:
        for task in args.tasks:
            urls = data.columns.get(pair) if task == "columns" else data.diff.get(pair)
            if urls is None:
                continue
            target_table = "t_diff" if task == "diff100" else "t_same"
            if "ours" in args.tools:
                if task == "columns":
                    root, slug = ours_project(args.bench_dir, pair, urls)
                    argv = [ombudsman, "run", "pipelines", "--project", slug, "--pipeline", "columns",
                            "--projects-dir", str(root), "--parallel", "--json"]  # fmt: skip
                else:
                    argv = [ombudsman, "run", "compare", "--source-url", urls[0], "--target-url", urls[1],
                            "--table", f"t={target_table}", "--key", "id", "--hash-mode", args.hash_mode,
                            "--json"]  # fmt: skip
                for mode, env in ours_env.items():
                    runs = args.installed_runs if mode in ("first", "temporary") else None
                    mode_argv = [argv[0], "--no-daemon", *argv[1:]] if mode == "temporary" else argv
                    cases.append(
                        Case(task, pair, f"ours ({mode})", mode_argv, ours_found, env, False, runs,
                             fresh_home=mode == "first")
                    )  # fmt: skip
            rel = peers.get("reladiff")
            if rel and task != "columns" and "reladiff" in args.tools:
                argv = cmp_bench.reladiff_command(str(rel / "reladiff"), *urls, "t", target_table)
                cases.append(
                    Case(
                        task, pair, "reladiff", argv, lambda o, e, c: cmp_bench.reladiff_found(o, e)
                    )
                )
            soda = peers.get("soda")
            if soda and task == "columns" and "soda" in args.tools:
                config, checks = soda_files(args.bench_dir, pair, urls)
                scan = f"{soda / 'soda'} scan -c {config} {checks}"
                argv = ["sh", "-c", f"{scan} -d src; {scan} -d tgt"]
                cases.append(
                    Case(task, pair, "soda (2 scans)", argv, soda_found, soda_env(args.bench_dir))
                )
            dvt = peers.get("dvt")
            if dvt and pair == "postgresql-postgresql" and "dvt" in args.tools:
                env = dvt_setup(dvt, args.bench_dir, urls)
                cli = str(dvt / "data-validation")
                if task == "columns":
                    argv = [cli, "validate", "column", "-sc", "src", "-tc", "tgt",
                            "-tbls", "public.fact_sales=public.fact_sales", "--count", ",".join(FACT_COLUMNS),
                            "--sum", ",".join(NUMERIC), "--min", ",".join(NUMERIC), "--max", ",".join(NUMERIC),
                            "--format", "csv"]  # fmt: skip
                    tool = "dvt (no uniqueness/FK)"
                else:
                    argv = [cli, "validate", "row", "-sc", "src", "-tc", "tgt",
                            "-tbls", f"public.t=public.{target_table}", "--primary-keys", "id",
                            "--hash", "*", "--filter-status", "fail", "--format", "csv"]  # fmt: skip
                    tool = "dvt --hash"
                runs = args.dvt_row_runs if task != "columns" else None
                cases.append(Case(task, pair, tool, argv, dvt_found, env, True, runs))
    return cases


# ----------------------------------------------------------------------------- peak memory


def service_pid(env: dict[str, str] | None) -> int | None:
    """The warm execution service of the command's Prefect home, if one runs (execservice.py)."""
    home = (env or {}).get("PREFECT_HOME")
    try:
        pid = int(json.loads((Path(home) / STATE_FILE).read_text())["pid"]) if home else None
    except (OSError, ValueError, KeyError):
        return None
    return pid if pid and is_service_process(pid) else None


def measure(
    argv: list[str], env: dict[str, str] | None, cwd: Path
) -> tuple[float, float, str, str]:
    """(wall seconds, peak RSS MiB as the docstring says, stdout, stderr) of one command."""
    service = service_pid(env)
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd
    )
    peak = cmp_bench.TreePeak(proc.pid, service).start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    return wall, peak.stop(), out, err


# ----------------------------------------------------------------------------- Prefect for ours


class WarmPrefect:
    """A Prefect server started once for the `warm` runs (its own PREFECT_HOME), stopped at the end."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.proc: subprocess.Popen[bytes] | None = None
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.api = f"http://127.0.0.1:{self.port}/api"

    def __enter__(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PREFECT_HOME": str(self.home)}
        env.pop("PREFECT_API_URL", None)
        log = open(self.home / "server.log", "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "prefect"), "server", "start",
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.api}/health", timeout=5) as r:
                    if r.status == 200:
                        return self.api
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)  # polling the server's own health endpoint (the real signal)
        raise SystemExit(f"the warm Prefect server did not start: see {self.home / 'server.log'}")

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ----------------------------------------------------------------------------- report


def fmt_runs(case: Case) -> tuple[str, float | None]:
    walls = [w for w, _, _ in case.runs]
    if not walls:
        return "-", None
    med = statistics.median(walls)
    return f"{min(walls):6.2f} {med:6.2f} {max(walls):6.2f}", med


def report(cases: list[Case], args: argparse.Namespace, loads: list[float]) -> None:
    print(
        f"\n{'task':8} {'pair':22} {'tool':24} {'min':>6} {'median':>6} {'max':>6}  {'x fastest peer':>14}  "
        f"{'peak MiB':>8}  found (missing/extra/changed, or checks)"
    )
    groups: dict[tuple[str, str], list[Case]] = {}
    for case in cases:
        groups.setdefault((case.task, case.pair), []).append(case)
    goals: list[str] = []
    for (task, pair), group in groups.items():
        peer_medians = {
            c.tool: fmt_runs(c)[1]
            for c in group
            if c.peer and fmt_runs(c)[1] is not None and not c.runs[0][2].startswith("error")
        }
        fastest = min(peer_medians.items(), key=lambda kv: kv[1]) if peer_medians else None
        for case in group:
            text, med = fmt_runs(case)
            ratio = f"{med / fastest[1]:.2f}x" if fastest and med else "-"
            peak = max((m for _, m, _ in case.runs), default=0)
            found = sorted({f for _, _, f in case.runs})
            print(f"{task:8} {pair:22} {case.tool:24} {text:>20}  {ratio:>14}  {peak:8.0f}  {' | '.join(found)}")  # fmt: skip
            if not case.peer and fastest and med:
                limit = 0.5 if case.tool == "ours (warm)" else 1.0
                verdict = "ok" if med / fastest[1] <= limit else "MISSED"
                goals.append(f"{task:8} {pair:22} {case.tool:18} {med / fastest[1]:.2f}x {fastest[0]} "
                             f"(goal <= {limit}x: {verdict})")  # fmt: skip
                rel = peer_medians.get("reladiff")
                if task == "diff100" and rel and args.hash_mode == "canonical":
                    verdict = "ok" if med / rel <= 0.2 else "MISSED"
                    goals.append(f"{task:8} {pair:22} {case.tool:18} {med / rel:.2f}x reladiff, canonical "
                                 f"hash, {args.rows:,} rows (goal <= 0.2x: {verdict})")  # fmt: skip
    print("\ngoals:")
    for line in goals:
        print("  " + line)
    print(
        f"\n{args.rows:,} rows, {args.runs} interleaved runs per case, 2-core machine shared with other "
        f"sessions; 1-minute load average during the runs {min(loads):.1f}-{max(loads):.1f}. ours: "
        f"hash_mode {args.hash_mode}; warm = the shared local server and warm execution service "
        "already up (the command is a thin client), first = a fresh Prefect home (the command starts "
        "both), api = PREFECT_API_URL set (the job runs in the command), temporary = Prefect's "
        "temporary server per command. Peak MiB: the largest VmHWM among the command's process "
        "tree and the warm service's forked job processes, sampled every 50 ms (the docstring)."
    )


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pairs", nargs="+", default=PAIRS, choices=PAIRS)
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["warm", "first"],
        choices=["warm", "first", "api", "temporary"],
    )
    parser.add_argument(
        "--hash-mode", default="auto", choices=["auto", "canonical"], help="ours' row diff"
    )
    parser.add_argument(
        "--bench-dir",
        type=Path,
        default=Path(os.environ.get("OMBUDSMAN_BENCH_DIR", "/tmp/ombudsman-peers")),
    )
    parser.add_argument(
        "--installed-runs",
        type=int,
        default=None,
        help="runs of ours' first and temporary modes (default --runs)",
    )
    parser.add_argument(
        "--dvt-row-runs", type=int, default=None, help="runs of DVT's row hash (default --runs)"
    )
    parser.add_argument("--pg-url", default=None, help="reuse a PostgreSQL (else a throwaway one)")
    args = parser.parse_args()
    # a terminated benchmark still stops its PostgreSQL and Prefect server (the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.bench_dir.mkdir(parents=True, exist_ok=True)
    print(f"# load average at start {os.getloadavg()[0]:.1f}", flush=True)

    peers: dict[str, Path | None] = {}
    for name in ("reladiff", "soda", "dvt"):
        if name in args.tools:
            peers[name], note = ensure_peer(args.bench_dir, name)
            print(f"# peer {name}: {note}", flush=True)

    needs_pg = any("postgresql" in p for p in args.pairs)
    server = cmp_bench.ThrowawayPostgres() if needs_pg and not args.pg_url else None
    pg_url = server.__enter__() if server else args.pg_url
    warm = WarmPrefect(args.bench_dir / "prefect-api") if "api" in args.modes else None
    ombudsman = str(Path(sys.executable).parent / "ombudsman")
    homes: list[Path] = []  # Prefect homes whose shared server and service are stopped at the end
    try:
        t0 = time.perf_counter()
        data = build_data(args.bench_dir, pg_url, args.rows, args.pairs, args.tasks)
        print(f"# data ready in {time.perf_counter() - t0:.1f} s", flush=True)
        base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        # the benchmark's database files live in the bench folder, outside the projects root
        base["OMBUDSMAN_ALLOWED_PATHS"] = str(args.bench_dir.resolve())
        ours_env: dict[str, dict] = {}
        if "warm" in args.modes:
            home = args.bench_dir / "prefect-warm"
            homes.append(home)
            ours_env["warm"] = {**base, "PREFECT_HOME": str(home)}
        if "first" in args.modes:
            ours_env["first"] = dict(base)  # PREFECT_HOME: a new one per run
        if warm:
            api = warm.__enter__()
            ours_env["api"] = {**base, "PREFECT_HOME": str(warm.home), "PREFECT_API_URL": api}
        if "temporary" in args.modes:
            home = args.bench_dir / "prefect-temporary"
            home.mkdir(parents=True, exist_ok=True)
            # Prefect's default 20 s wait for its temporary server is exceeded on a loaded machine
            ours_env["temporary"] = {
                **base,
                "PREFECT_HOME": str(home),
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
            }
        cases = make_cases(args, data, peers, ours_env)
        for case in cases:  # warm: one unmeasured command starts the server and the service
            if case.tool == "ours (warm)":
                subprocess.run(case.argv, env=case.env, capture_output=True)
                break
        work = args.bench_dir / "work"
        work.mkdir(exist_ok=True)
        logs = args.bench_dir / "logs"
        logs.mkdir(exist_ok=True)
        loads: list[float] = []
        try:
            for run in range(args.runs):
                for case in cases:
                    if case.max_runs is not None and run >= case.max_runs:
                        continue
                    env = case.env
                    if case.fresh_home:
                        home = args.bench_dir / "prefect-first" / f"{len(homes)}"
                        shutil.rmtree(home, ignore_errors=True)
                        homes.append(home)
                        env = {**(case.env or {}), "PREFECT_HOME": str(home)}
                    wall, rss, out, err = measure(case.argv, env, work)
                    if case.fresh_home:
                        subprocess.run([ombudsman, "server", "stop"], env=env, capture_output=True)
                    code = 0  # measure() does not return it; the parsers read the output
                    found = case.parse(out, err, code)
                    slug = f"{case.task}_{case.pair}_{case.tool}_{run + 1}".replace(" ", "_")
                    for suffix, text in (("out", out), ("err", err)):  # kept for a look afterwards
                        (logs / f"{slug.replace('/', '_')}.{suffix}").write_text(text)
                    case.runs.append((wall, rss, found))
                    loads.append(os.getloadavg()[0])
                    print(f"run {run + 1} {case.task:8} {case.pair:22} {case.tool:24} {wall:7.2f} s "
                          f"{rss:6.0f} MiB  {found}  load {loads[-1]:.1f}", flush=True)  # fmt: skip
        finally:  # also after SIGTERM / Ctrl-C: the table of the runs done so far
            if loads:
                report(cases, args, loads)
    finally:
        for home in homes:
            subprocess.run(
                [ombudsman, "server", "stop"],
                env={**os.environ, "PREFECT_HOME": str(home)},
                capture_output=True,
            )
        if warm:
            warm.__exit__(None, None, None)
        if server:
            server.__exit__(None, None, None)


if __name__ == "__main__":
    main()
