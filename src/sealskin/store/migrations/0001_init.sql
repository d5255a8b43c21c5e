-- SealSkin schema, version 1 (upstream-protocol 5: data model).
-- Times are REAL epoch seconds supplied by the caller; JSON columns hold objects
-- written by sealskin.store.sqlite and read back by the same module.

-- Users and admins share one namespace (upstream-protocol 5.3); admins have no settings.
CREATE TABLE principals (
    username   TEXT    NOT NULL PRIMARY KEY,
    public_key TEXT    NOT NULL,
    is_admin   INTEGER NOT NULL CHECK (is_admin IN (0, 1)),
    settings   TEXT,                           -- UserSettings JSON, NULL for admins
    created_at REAL    NOT NULL
);

CREATE TABLE groups (
    name     TEXT NOT NULL PRIMARY KEY,
    settings TEXT NOT NULL                     -- UserSettings JSON (upstream-protocol 5.5)
);

-- rowid order is install order, which listings keep (upstream keeps a list).
CREATE TABLE apps (
    id   TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    body TEXT NOT NULL                         -- the whole InstalledApp as JSON (5.6)
);

CREATE TABLE app_stores (
    name TEXT NOT NULL PRIMARY KEY,
    url  TEXT NOT NULL
);

CREATE TABLE templates (
    name     TEXT NOT NULL PRIMARY KEY,
    settings TEXT NOT NULL                     -- {env name: string value} JSON (5.9)
);

-- No foreign key to principals: a session outlives its owner's row until
-- orchestration stops its container (reconcile finds it by label).
CREATE TABLE sessions (
    id                 TEXT    NOT NULL PRIMARY KEY,
    username           TEXT    NOT NULL,
    app_id             TEXT    NOT NULL,
    app_name           TEXT    NOT NULL,
    app_logo           TEXT    NOT NULL,
    instance_id        TEXT    NOT NULL,
    host               TEXT    NOT NULL,
    port               INTEGER NOT NULL,
    created_at         REAL    NOT NULL,
    sealed_credentials BLOB    NOT NULL,
    launch_context     TEXT,                   -- JSON object or NULL
    home_path          TEXT,
    ephemeral          INTEGER NOT NULL CHECK (ephemeral IN (0, 1)),
    cookie_digests     TEXT    NOT NULL,       -- JSON list of sha256 hex strings
    state              TEXT    NOT NULL
);
CREATE INDEX sessions_by_username ON sessions (username);

CREATE TABLE homes (
    username   TEXT NOT NULL REFERENCES principals (username) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (username, name)
);

CREATE TABLE uploads (
    id           TEXT    NOT NULL PRIMARY KEY,
    username     TEXT    NOT NULL REFERENCES principals (username) ON DELETE CASCADE,
    filename     TEXT    NOT NULL,
    total_size   INTEGER NOT NULL,
    chunk_size   INTEGER NOT NULL,
    total_chunks INTEGER NOT NULL,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL
);
CREATE INDEX uploads_by_username ON uploads (username);
CREATE INDEX uploads_by_updated_at ON uploads (updated_at);

-- One row per received chunk: marking a chunk is an idempotent insert, not a
-- read-modify-write of a growing list.
CREATE TABLE upload_chunks (
    upload_id TEXT    NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,
    PRIMARY KEY (upload_id, idx)
) WITHOUT ROWID;

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     REAL NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL                       -- JSON object, never secrets
);

CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
