"""DuckDB side of the benchmark: loads the CSV files the Rust harness wrote,
runs each scorecard query repeatedly and prints one JSON object.

Input (JSON on stdin): {"schema", "interactions_csv", "surveys_csv",
"queries": [{"name", "sql"}], "iterations", "time_limit_seconds"}.
Output: {"load_seconds", "results": [{"name", "latencies_ms", "row"}]}.
"""

import json
import sys
import time

import duckdb


def main() -> None:
    job = json.load(sys.stdin)
    con = duckdb.connect()
    con.execute(job["schema"])
    began = time.perf_counter()
    con.execute(
        "INSERT INTO interactions SELECT * FROM read_csv(?, header = false, "
        "columns = {'interaction_id': 'VARCHAR', 'revision': 'BIGINT', 'ticket_id': 'VARCHAR', "
        "'team_id': 'VARCHAR', 'agent_id': 'VARCHAR', 'customer_id': 'VARCHAR', "
        "'channel': 'VARCHAR', 'priority': 'VARCHAR', 'opened_at': 'TIMESTAMP', "
        "'first_response_at': 'TIMESTAMP', 'closed_at': 'TIMESTAMP', 'handle_us': 'BIGINT', "
        "'resolved': 'BOOLEAN', 'tags': 'VARCHAR'})",
        [job["interactions_csv"]],
    )
    con.execute(
        "INSERT INTO survey_responses SELECT * FROM read_csv(?, header = false, "
        "columns = {'response_id': 'VARCHAR', 'revision': 'BIGINT', 'interaction_id': 'VARCHAR', "
        "'kind': 'VARCHAR', 'score': 'INTEGER', 'submitted_at': 'TIMESTAMP'})",
        [job["surveys_csv"]],
    )
    load_seconds = time.perf_counter() - began
    results = []
    for query in job["queries"]:
        # One unmeasured run warms the caches, as for every system.
        con.execute(query["sql"]).fetchall()
        latencies = []
        started = time.perf_counter()
        row = None
        while len(latencies) < job["iterations"] and (
            len(latencies) < 3 or time.perf_counter() - started < job["time_limit_seconds"]
        ):
            t0 = time.perf_counter()
            cursor = con.execute(query["sql"])
            values = cursor.fetchone()
            latencies.append((time.perf_counter() - t0) * 1e3)
            names = [d[0] for d in cursor.description]
            row = {
                name: (float(value) if value is not None else None)
                for name, value in zip(names, values)
            }
        results.append({"name": query["name"], "latencies_ms": latencies, "row": row})
    json.dump({"load_seconds": load_seconds, "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
