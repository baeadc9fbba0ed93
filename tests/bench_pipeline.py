"""``make bench``: pipeline throughput and fault tolerance against a scripted loopback server.

Runs N benchmark queries (default 300, k=2) through the real client (LiteLLM over HTTP) twice:
fault-free, then with a share of requests answered 429 (Retry-After 0), 500, or dropped
mid-response. Prints calls per second, faults injected, retries, samples lost, duplicates, and
whether the metrics and result files are identical. The BSA dataset is read from $BSA_DATASET or
../shared/bsa/dataset.csv; its rows never leave the temporary directory.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import compose_config, dataset_path
from helpers import responder, scripted_overrides
from scripted_server import ScriptedServer
from test_resilience import Faulty

from bsa.data import read
from bsa.run import run
from bsa.verdict import THINK_LABELS


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--fault-rate", type=float, default=0.2)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    data = dataset_path()
    if data is None:
        print("bench: the BSA dataset was not found; set BSA_DATASET=…/dataset.csv", file=sys.stderr)
        return 2
    queries = read(data)
    scenario = {q.id: q.scenario for q in queries}

    def verdicts(kind: str, qid: str, i: int) -> str:
        h = int(hashlib.sha256(qid.encode()).hexdigest()[:8], 16)
        if kind == "safety":
            return "Unsafe" if (h + i) % 7 == 0 else "Safe"
        labels = THINK_LABELS[scenario[qid]]
        return labels[(h // 7 + i) % len(labels)]

    ids = {q.query: q.id for q in queries}
    out = Path(tempfile.mkdtemp(prefix="bsa-bench-"))

    def one(name: str, fault_rate: float) -> tuple[dict, float, int, Faulty | None]:
        inner = responder(ids, verdicts)
        faulty = Faulty(inner, fault_rate) if fault_rate else None
        with ScriptedServer(faulty or inner) as server:
            cfg = compose_config(
                [
                    *scripted_overrides(server.api_base, data, k=args.k),
                    f"cache.dir={out / name / 'cache'}",
                    f"dataset.limit={args.queries}",
                    f"concurrency={args.concurrency}",
                    "max_attempts=10",
                    "progress=false",
                ]
            )
            t0 = time.perf_counter()
            res = run(cfg, out / name / "run")
            return res, time.perf_counter() - t0, len(server.requests), faulty

    ref, t_ref, _, _ = one("clean", 0.0)
    res, t_f, requests, faulty = one("faulty", args.fault_rate)
    assert faulty is not None
    keys = [(g["id"], g["sample_index"]) for g in res.generations]

    def timeless(name: str) -> list[dict]:  # latency_s is timing, not a result
        rows = [json.loads(x) for x in (out / name / "run" / "judgments.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k != "latency_s"} for r in rows]

    same = {
        "judgments.jsonl (latency_s aside)": timeless("clean") == timeless("faulty"),
        "bsa_results.csv": (out / "clean" / "run" / "bsa_results.csv").read_bytes()
        == (out / "faulty" / "run" / "bsa_results.csv").read_bytes(),
    }
    calls = ref.stats.calls
    print(
        json.dumps(
            {
                "queries": len(ref.queries),
                "k": args.k,
                "calls": calls,
                "fault_free_wall_s": round(t_ref, 1),
                "fault_free_calls_per_s": round(calls / t_ref, 1),
                "faulty_wall_s": round(t_f, 1),
                "requests_made_with_faults": requests,
                "faults_injected": faulty.injected,
                "retries": res.stats.retries,
                "samples_lost": len(ref.generations) - len(res.generations),
                "duplicates": len(keys) - len(set(keys)),
                "metrics_identical": res.metrics == ref.metrics,
                "files_identical": same,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
