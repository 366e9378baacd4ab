-- Devices: one row per device id; the token is stored as its SHA-256 (hex).
CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    model TEXT,
    channel TEXT,
    build_fingerprint TEXT,
    build_timestamp BIGINT,
    last_seen BIGINT
);

CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- The server's rollout percentage per offer; it overrides the signed feed's.
CREATE TABLE rollouts (
    offer_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    channel TEXT NOT NULL,
    build_fingerprint TEXT NOT NULL,
    build_timestamp BIGINT NOT NULL,
    source_fingerprint TEXT,
    percent BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

CREATE TABLE rollout_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    offer_id TEXT NOT NULL,
    percent BIGINT NOT NULL,
    at BIGINT NOT NULL,
    by_whom TEXT NOT NULL
);
CREATE INDEX rollout_history_offer ON rollout_history (offer_id, at);

-- Which offer a device's check-in led to (the server applies the device's own choice rule).
CREATE TABLE offers_made (
    device_id TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, offer_id)
);
CREATE INDEX offers_made_offer ON offers_made (offer_id);

-- Every report as received.
CREATE TABLE reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    code BIGINT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    from_build TEXT NOT NULL,
    to_build TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    slot TEXT NOT NULL,
    at BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX reports_offer ON reports (offer_id, received_at);

-- The latest report per device and offer: what the dashboard counts.
CREATE TABLE device_offer_state (
    device_id TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    code BIGINT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, offer_id)
);
CREATE INDEX device_offer_state_offer ON device_offer_state (offer_id);
