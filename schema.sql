-- The full current schema. PRAGMA user_version records its version; gateway/db.py migrates
-- older files forward. Times are ISO-8601 UTC text ("2026-11-22T14:05:09Z").

CREATE TABLE IF NOT EXISTS backends (
    name           TEXT PRIMARY KEY,
    base_url       TEXT NOT NULL,
    api_key_sealed BLOB,                       -- AES-256-GCM blob (gateway/crypto.py); NULL: no key
    api_key_last4  TEXT NOT NULL DEFAULT '',
    pool           TEXT NOT NULL DEFAULT 'primary' CHECK (pool IN ('primary', 'fallback')),
    rpm            INTEGER CHECK (rpm IS NULL OR rpm > 0),
    tpm            INTEGER CHECK (tpm IS NULL OR tpm > 0),
    priority       INTEGER NOT NULL DEFAULT 0 CHECK (priority >= 0),
    weight         INTEGER NOT NULL DEFAULT 1 CHECK (weight > 0),
    timeout        REAL NOT NULL DEFAULT 60 CHECK (timeout > 0),
    enabled        INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

-- A model a backend serves: `name` is what clients ask for, `upstream` what is sent upstream.
CREATE TABLE IF NOT EXISTS backend_models (
    backend  TEXT NOT NULL REFERENCES backends (name) ON DELETE CASCADE ON UPDATE CASCADE,
    name     TEXT NOT NULL,
    upstream TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (backend, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS client_keys (
    name         TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,         -- SHA-256 hex of the key; the key itself is never stored
    key_last4    TEXT NOT NULL,
    rpm          INTEGER CHECK (rpm IS NULL OR rpm > 0),
    budget_usd   REAL CHECK (budget_usd IS NULL OR budget_usd >= 0),
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT,
    last_used_at TEXT
);

-- Operator overrides of the built-in price table (gateway/pricing.py). USD per million tokens.
CREATE TABLE IF NOT EXISTS prices (
    model                 TEXT PRIMARY KEY,
    input_per_mtok        REAL NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok       REAL NOT NULL CHECK (output_per_mtok >= 0),
    cached_input_per_mtok REAL CHECK (cached_input_per_mtok IS NULL OR cached_input_per_mtok >= 0),
    updated_at            TEXT NOT NULL
);

-- Hour buckets, kept forever. Every key column is NOT NULL: a NULL never matches ON CONFLICT.
-- backend '' and model '' mark requests the gateway answered itself (no backend reached).
CREATE TABLE IF NOT EXISTS usage_hourly (
    hour              TEXT NOT NULL,           -- "2026-11-22T14:00:00Z"
    backend           TEXT NOT NULL,
    model             TEXT NOT NULL,           -- the upstream model that answered (billed)
    api_key           TEXT NOT NULL,           -- the client key's name
    requests          INTEGER NOT NULL DEFAULT 0,  -- client requests answered from this row
    failed_requests   INTEGER NOT NULL DEFAULT 0,  -- of those, answered with an error
    errors            INTEGER NOT NULL DEFAULT 0,  -- failed upstream attempts + failed requests
    attempts          INTEGER NOT NULL DEFAULT 0,  -- upstream attempts made to this backend
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    unpriced          INTEGER NOT NULL DEFAULT 0,  -- requests with tokens but no known price
    latency_ms_sum    REAL NOT NULL DEFAULT 0,
    ttft_ms_sum       REAL NOT NULL DEFAULT 0,
    ttft_count        INTEGER NOT NULL DEFAULT 0,  -- requests with a time to first token (streams)
    streams           INTEGER NOT NULL DEFAULT 0,
    fallbacks         INTEGER NOT NULL DEFAULT 0,  -- requests served by the fallback pool
    errors_429        INTEGER NOT NULL DEFAULT 0,
    errors_5xx        INTEGER NOT NULL DEFAULT 0,
    errors_timeout    INTEGER NOT NULL DEFAULT 0,
    errors_connect    INTEGER NOT NULL DEFAULT 0,
    errors_auth       INTEGER NOT NULL DEFAULT 0,
    skips_cooldown    INTEGER NOT NULL DEFAULT 0,
    skips_bucket      INTEGER NOT NULL DEFAULT 0,
    skips_circuit     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, backend, model, api_key)
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS usage_hourly_backend ON usage_hourly (backend, hour);

-- Daily rollup of usage_hourly (same key with the UTC date, same counters), written in the same
-- transaction (gateway/queries.py write_usage). The dashboard's 30- and 365-day views read it
-- instead of 24 times as many hour rows. A counter added to usage_hourly is added here too.
CREATE TABLE IF NOT EXISTS usage_daily (
    day               TEXT NOT NULL,           -- "2026-11-22"
    backend           TEXT NOT NULL,
    model             TEXT NOT NULL,
    api_key           TEXT NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    failed_requests   INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    unpriced          INTEGER NOT NULL DEFAULT 0,
    latency_ms_sum    REAL NOT NULL DEFAULT 0,
    ttft_ms_sum       REAL NOT NULL DEFAULT 0,
    ttft_count        INTEGER NOT NULL DEFAULT 0,
    streams           INTEGER NOT NULL DEFAULT 0,
    fallbacks         INTEGER NOT NULL DEFAULT 0,
    errors_429        INTEGER NOT NULL DEFAULT 0,
    errors_5xx        INTEGER NOT NULL DEFAULT 0,
    errors_timeout    INTEGER NOT NULL DEFAULT 0,
    errors_connect    INTEGER NOT NULL DEFAULT 0,
    errors_auth       INTEGER NOT NULL DEFAULT 0,
    skips_cooldown    INTEGER NOT NULL DEFAULT 0,
    skips_bucket      INTEGER NOT NULL DEFAULT 0,
    skips_circuit     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, backend, model, api_key)
) WITHOUT ROWID;

-- Coarser rollups, same counters, written in the same transaction: per month (the usage page's
-- long ranges read whole months here and only the partial months at the edges from usage_daily)
-- and one row per day over everything (the 365-day activity chart, the month's cost).
CREATE TABLE IF NOT EXISTS usage_monthly (
    month             TEXT NOT NULL,           -- "2026-11"
    backend           TEXT NOT NULL,
    model             TEXT NOT NULL,
    api_key           TEXT NOT NULL,
    requests          INTEGER NOT NULL DEFAULT 0,
    failed_requests   INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    unpriced          INTEGER NOT NULL DEFAULT 0,
    latency_ms_sum    REAL NOT NULL DEFAULT 0,
    ttft_ms_sum       REAL NOT NULL DEFAULT 0,
    ttft_count        INTEGER NOT NULL DEFAULT 0,
    streams           INTEGER NOT NULL DEFAULT 0,
    fallbacks         INTEGER NOT NULL DEFAULT 0,
    errors_429        INTEGER NOT NULL DEFAULT 0,
    errors_5xx        INTEGER NOT NULL DEFAULT 0,
    errors_timeout    INTEGER NOT NULL DEFAULT 0,
    errors_connect    INTEGER NOT NULL DEFAULT 0,
    errors_auth       INTEGER NOT NULL DEFAULT 0,
    skips_cooldown    INTEGER NOT NULL DEFAULT 0,
    skips_bucket      INTEGER NOT NULL DEFAULT 0,
    skips_circuit     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (month, backend, model, api_key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS usage_day_totals (
    day               TEXT NOT NULL PRIMARY KEY,  -- "2026-11-22"
    requests          INTEGER NOT NULL DEFAULT 0,
    failed_requests   INTEGER NOT NULL DEFAULT 0,
    errors            INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens  INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL NOT NULL DEFAULT 0,
    unpriced          INTEGER NOT NULL DEFAULT 0,
    latency_ms_sum    REAL NOT NULL DEFAULT 0,
    ttft_ms_sum       REAL NOT NULL DEFAULT 0,
    ttft_count        INTEGER NOT NULL DEFAULT 0,
    streams           INTEGER NOT NULL DEFAULT 0,
    fallbacks         INTEGER NOT NULL DEFAULT 0,
    errors_429        INTEGER NOT NULL DEFAULT 0,
    errors_5xx        INTEGER NOT NULL DEFAULT 0,
    errors_timeout    INTEGER NOT NULL DEFAULT 0,
    errors_connect    INTEGER NOT NULL DEFAULT 0,
    errors_auth       INTEGER NOT NULL DEFAULT 0,
    skips_cooldown    INTEGER NOT NULL DEFAULT 0,
    skips_bucket      INTEGER NOT NULL DEFAULT 0,
    skips_circuit     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Latency histograms of successful requests per hour (gateway/histogram.py: quarter-octave
-- buckets), so the dashboard shows median and p95 without reading the request log.
CREATE TABLE IF NOT EXISTS latency_hourly (
    hour   TEXT NOT NULL,
    metric TEXT NOT NULL CHECK (metric IN ('latency', 'ttft')),
    bucket INTEGER NOT NULL,
    count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, metric, bucket)
) WITHOUT ROWID;

-- The recent per-request log, pruned past [usage].request_log_days.
CREATE TABLE IF NOT EXISTS request_log (
    request_id        TEXT PRIMARY KEY,
    ts                TEXT NOT NULL,
    endpoint          TEXT NOT NULL,
    api_key           TEXT NOT NULL,
    requested_model   TEXT NOT NULL,           -- what the client asked for (maybe an alias)
    model             TEXT NOT NULL,           -- the upstream model that answered
    backend           TEXT NOT NULL,
    pool              TEXT NOT NULL,
    status            INTEGER NOT NULL,
    stream            INTEGER NOT NULL,
    fallback          INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cost_usd          REAL NOT NULL,
    latency_ms        REAL NOT NULL,
    ttft_ms           REAL,
    overhead_ms       REAL NOT NULL,
    error             TEXT,
    attempt_chain     TEXT NOT NULL            -- JSON: [{"backend", "status", "kind", "ms"}]
);

CREATE INDEX IF NOT EXISTS request_log_ts ON request_log (ts);

-- Backend cooldowns survive a restart (times are wall-clock POSIX seconds).
CREATE TABLE IF NOT EXISTS cooldowns (
    backend         TEXT PRIMARY KEY,
    until_ts        REAL NOT NULL,
    consecutive_429 INTEGER NOT NULL,
    reason          TEXT NOT NULL
) WITHOUT ROWID;

-- Install-wide values: admin token hash, session secret, config version...
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
