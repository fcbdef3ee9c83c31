"""Ordered, named schema migrations. A migration is never edited once released: add a new one.

The ``migrations`` table records which names ran, so an old database is brought forward on open
and a database written by a newer tunegate (unknown names) is refused rather than corrupted.

The same text runs on SQLite and PostgreSQL: write portable DDL (``TEXT``, ``INTEGER``, ``REAL``,
``INTEGER PRIMARY KEY AUTOINCREMENT`` are translated, see :mod:`tunegate.store.dialect`). A
migration that cannot be portable puts its PostgreSQL text in ``DIALECT_VARIANTS[name]["postgres"]``.
"""

from __future__ import annotations

__all__ = ["DIALECT_VARIANTS", "MIGRATIONS", "migration_sql"]

MIGRATIONS: list[tuple[str, str]] = [
    ("0001_foundation", """
CREATE TABLE datasets (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    source      TEXT,
    n_rows      INTEGER NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE dataset_rows (
    dataset_hash TEXT NOT NULL REFERENCES datasets(hash),
    row_id       TEXT NOT NULL,
    split        TEXT NOT NULL,
    cohorts      TEXT NOT NULL,          -- JSON list
    data         TEXT NOT NULL,          -- canonical JSON of the row
    PRIMARY KEY (dataset_hash, row_id)
);
CREATE TABLE candidates (
    hash        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,           -- spec | outputs
    spec        TEXT NOT NULL,           -- JSON (identity + display fields)
    lineage     TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);
CREATE TABLE runs (
    id             TEXT PRIMARY KEY,
    identity       TEXT NOT NULL,        -- hash of dataset + selection + candidate + evaluators
    dataset_hash   TEXT NOT NULL,
    candidate_hash TEXT NOT NULL,
    selection      TEXT NOT NULL,        -- JSON: split, cohorts, limit, row ids hash
    evaluators     TEXT NOT NULL,        -- JSON list of evaluator identities
    n_rows         INTEGER NOT NULL,     -- rows planned
    status         TEXT NOT NULL,        -- running | finished
    meta           TEXT NOT NULL,        -- JSON: tunegate version, seeds, machine, libraries
    model_calls    INTEGER NOT NULL DEFAULT 0,
    cache_hits     INTEGER NOT NULL DEFAULT 0,
    started_at     TEXT NOT NULL,
    finished_at    TEXT
);
CREATE INDEX runs_identity ON runs(identity, started_at);
CREATE TABLE run_rows (
    run_id   TEXT NOT NULL REFERENCES runs(id),
    row_id   TEXT NOT NULL,
    seq      INTEGER NOT NULL,           -- position in the run's row order
    error    TEXT,                       -- generation error for the whole row, if any
    done_at  TEXT NOT NULL,
    PRIMARY KEY (run_id, row_id)
);
CREATE TABLE outputs (
    run_id       TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    output       TEXT,                   -- JSON ModelOutput, NULL when generation failed
    error        TEXT,
    PRIMARY KEY (run_id, row_id, sample_index)
);
CREATE TABLE scores (
    run_id       TEXT NOT NULL,
    row_id       TEXT NOT NULL,
    sample_index INTEGER NOT NULL,
    evaluator    TEXT NOT NULL,
    status       TEXT NOT NULL,
    score        REAL,
    passed       INTEGER,
    result       TEXT NOT NULL,          -- JSON EvalResult
    PRIMARY KEY (run_id, row_id, sample_index, evaluator)
);
CREATE TABLE cache (
    key         TEXT PRIMARY KEY,        -- sha256 of backend identity + request payload
    backend     TEXT NOT NULL,           -- JSON backend identity
    request     TEXT NOT NULL,           -- JSON request payload
    output      TEXT NOT NULL,           -- JSON ModelOutput
    created_at  TEXT NOT NULL
);
"""),
    ("0002_verdicts", """
CREATE TABLE verdicts (
    id             TEXT PRIMARY KEY,
    baseline_run   TEXT NOT NULL,
    candidate_run  TEXT NOT NULL,
    policy_hash    TEXT NOT NULL,
    decision       TEXT NOT NULL,
    verdict        TEXT NOT NULL,        -- JSON
    created_at     TEXT NOT NULL
);
"""),
    ("0003_prompts", """
CREATE TABLE prompt_versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,        -- 1, 2, ... per name (a row is never updated or deleted)
    template    TEXT NOT NULL,           -- JSON PromptTemplate without ref
    hash        TEXT NOT NULL,           -- content hash of template
    message     TEXT NOT NULL,
    author      TEXT,
    lineage     TEXT NOT NULL DEFAULT '{}',  -- JSON: parent version, optimizer, config/dataset hashes
    created_at  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX prompt_versions_hash ON prompt_versions(name, hash);
CREATE TABLE prompt_label_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of moves (the newest per label is current)
    name        TEXT NOT NULL,
    label       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    previous    INTEGER,                 -- version the label pointed at before, NULL when new
    head        INTEGER NOT NULL,        -- latest version of the prompt at the move (orders moves among commits)
    moved_at    TEXT NOT NULL,
    FOREIGN KEY (name, version) REFERENCES prompt_versions(name, version)
);
CREATE INDEX prompt_label_events_label ON prompt_label_events(name, label, id);
"""),
    ("0004_gateway_release", """
CREATE TABLE gateway_rollout (
    route          TEXT NOT NULL,
    arm            TEXT NOT NULL,
    percent        REAL NOT NULL,        -- share of sticky buckets sent to the arm, 0..100
    candidate_hash TEXT,                 -- the candidate the share was granted to (NULL: baseline)
    verdict_hash   TEXT,                 -- sha256 of the verdict.json that allowed it
    seq            INTEGER NOT NULL,     -- event that set this row
    updated_at     TEXT NOT NULL,
    PRIMARY KEY (route, arm)
);
CREATE TABLE gateway_rollout_events (
    id             TEXT PRIMARY KEY,     -- uuid
    seq            INTEGER NOT NULL UNIQUE,  -- global order of rollout changes (max + 1 in the write tx)
    route          TEXT NOT NULL,
    arm            TEXT NOT NULL,
    action         TEXT NOT NULL,        -- promote | set | rollback
    from_percent   REAL NOT NULL,
    to_percent     REAL NOT NULL,
    candidate_hash TEXT,
    verdict_hash   TEXT,
    actor          TEXT NOT NULL,
    reason         TEXT NOT NULL,
    evidence       TEXT NOT NULL,        -- JSON: verdict summary, controller statistics...
    created_at     TEXT NOT NULL
);
CREATE INDEX gateway_rollout_events_route ON gateway_rollout_events(route, seq);
CREATE TABLE gateway_requests (
    request_id     TEXT PRIMARY KEY,
    route          TEXT NOT NULL,
    arm            TEXT,
    chosen_arm     TEXT,
    candidate_hash TEXT,
    prompt_version TEXT,
    cohort         TEXT,
    api_key        TEXT,                 -- the gateway key's name, never the key
    status         TEXT NOT NULL,
    http_status    INTEGER NOT NULL,
    error          TEXT,
    latency_ms     REAL NOT NULL,
    tokens_in      INTEGER NOT NULL,
    tokens_out     INTEGER NOT NULL,
    cost           REAL NOT NULL,
    cached         INTEGER NOT NULL,
    attempts       TEXT NOT NULL,        -- JSON list of upstream attempts
    guardrails     TEXT NOT NULL,        -- JSON list of guardrail events
    created_at     TEXT NOT NULL
);
CREATE INDEX gateway_requests_route ON gateway_requests(route, created_at);
"""),
    ("0005_release_controller", """
CREATE TABLE spans (
    trace_id       TEXT NOT NULL,
    span_id        TEXT NOT NULL,
    parent_id      TEXT,
    name           TEXT NOT NULL,
    kind           TEXT,                 -- openinference.span.kind: LLM | GUARDRAIL | EVALUATOR
    start_ns       BIGINT NOT NULL,
    end_ns         BIGINT NOT NULL,
    duration_ms    REAL NOT NULL,
    status         TEXT NOT NULL,
    source         TEXT,                 -- gateway | shadow | offline
    route          TEXT,
    arm            TEXT,
    cohort         TEXT,
    model          TEXT,                 -- gen_ai.request.model
    response_model TEXT,
    prompt_version TEXT,
    candidate      TEXT,
    request_id     TEXT,
    input_tokens   INTEGER,
    output_tokens  INTEGER,
    cost           REAL,
    eval_failed    INTEGER,              -- 1 any evaluator failed, 0 all passed, NULL not evaluated
    attributes     TEXT NOT NULL,        -- JSON
    events         TEXT NOT NULL,        -- JSON
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX spans_start ON spans(start_ns);
CREATE INDEX spans_request ON spans(request_id);
CREATE TABLE online_pairs (
    request_id        TEXT PRIMARY KEY,
    route             TEXT NOT NULL,
    cohort            TEXT,
    base_arm          TEXT NOT NULL,
    candidate_arm     TEXT NOT NULL,
    base_hash         TEXT NOT NULL,
    candidate_hash    TEXT NOT NULL,
    base_prompt       TEXT,              -- prompt versions (name@vN) of each arm
    candidate_prompt  TEXT,
    evaluators        TEXT NOT NULL,     -- JSON list of evaluator identities (as the offline gate's)
    base_scores       TEXT NOT NULL,     -- JSON {evaluator: EvalResult}
    candidate_scores  TEXT NOT NULL,
    base_failed       INTEGER,
    candidate_failed  INTEGER,
    candidate_error   TEXT,              -- the shadow call failed (never touches the primary)
    example           TEXT NOT NULL,     -- JSON row: messages, schema, cohorts (a dataset like any other)
    base_output       TEXT,
    candidate_output  TEXT,
    created_at        TEXT NOT NULL
);
CREATE INDEX online_pairs_route ON online_pairs(route, created_at);
CREATE TABLE release_decisions (
    id            TEXT PRIMARY KEY,
    route         TEXT NOT NULL,
    arm           TEXT NOT NULL,
    action        TEXT NOT NULL,         -- ramp | rollback | rollback_cohort
    from_percent  REAL NOT NULL,
    to_percent    REAL NOT NULL,
    cohorts       TEXT,                  -- JSON list for a cohort-scoped rollback
    reason        TEXT NOT NULL,
    evidence      TEXT NOT NULL,         -- JSON list of {signal, source, cohort, statistic, bound, n, alpha}
    policy_hash   TEXT NOT NULL,
    candidate_hash TEXT,
    created_at    TEXT NOT NULL
);
CREATE INDEX release_decisions_route ON release_decisions(route, created_at);
CREATE TABLE gateway_feedback (
    id          TEXT PRIMARY KEY,
    request_id  TEXT NOT NULL,
    route       TEXT,
    arm         TEXT,
    cohort      TEXT,
    thumbs      INTEGER,                 -- 1 up, -1 down, NULL when only a score was given
    score       REAL,
    comment     TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX gateway_feedback_request ON gateway_feedback(request_id);
"""),
]

#: Per-dialect replacements of a migration's text, by migration name: {"postgres": "..."}.
DIALECT_VARIANTS: dict[str, dict[str, str]] = {}


def migration_sql(name: str, sql: str, dialect: str) -> str:
    """The text of migration ``name`` for ``dialect`` (``sqlite`` | ``postgres``)."""
    return DIALECT_VARIANTS.get(name, {}).get(dialect, sql)
