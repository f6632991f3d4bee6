-- Albums, photos and their variants; the same shape as migrations/postgres/0001_schema.sql.
-- Timestamps are microseconds since the Unix epoch (UTC).
CREATE TABLE albums (
    id             INTEGER PRIMARY KEY,
    title          TEXT    NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description    TEXT    NOT NULL DEFAULT '',
    owner_id       TEXT    NOT NULL DEFAULT '',
    is_published   INTEGER NOT NULL DEFAULT 0 CHECK (is_published IN (0, 1)),
    "order"        INTEGER NOT NULL DEFAULT 0 CHECK ("order" BETWEEN 0 AND 2147483647),
    -- Forward reference: SQLite checks foreign keys when rows change, not at CREATE time.
    cover_photo_id INTEGER REFERENCES photos (id) ON DELETE SET NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE photos (
    id               INTEGER PRIMARY KEY,
    album_id         INTEGER NOT NULL REFERENCES albums (id) ON DELETE CASCADE,
    title            TEXT    NOT NULL DEFAULT '',
    caption          TEXT    NOT NULL DEFAULT '',
    -- SQLite integers are 64-bit: the range check is what makes the order a proto int32.
    "order"          INTEGER NOT NULL CHECK ("order" BETWEEN 0 AND 2147483647),
    original_key     TEXT    NOT NULL,
    content_sha256   TEXT    NOT NULL CHECK (length(content_sha256) = 64 AND content_sha256 NOT GLOB '*[^0-9a-f]*'),
    width            INTEGER NOT NULL DEFAULT 0,
    height           INTEGER NOT NULL DEFAULT 0,
    bytes            INTEGER NOT NULL DEFAULT 0,
    format           INTEGER NOT NULL DEFAULT 0,
    taken_at         INTEGER,
    dominant_color   TEXT    NOT NULL DEFAULT '',
    blur_placeholder TEXT    NOT NULL DEFAULT '',
    blurhash         TEXT    NOT NULL DEFAULT '',
    thumbhash        TEXT    NOT NULL DEFAULT '',
    status           INTEGER NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3)),
    failure_reason   TEXT    NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    CONSTRAINT photos_album_content_key UNIQUE (album_id, content_sha256)
);

CREATE TABLE photo_variants (
    photo_id   INTEGER NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    preset     TEXT    NOT NULL,
    format     INTEGER NOT NULL,
    object_key TEXT    NOT NULL,
    width      INTEGER NOT NULL DEFAULT 0,
    height     INTEGER NOT NULL DEFAULT 0,
    bytes      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (photo_id, preset, format)
);

CREATE INDEX albums_published_order_created_idx ON albums (is_published, "order", created_at DESC);
CREATE INDEX albums_published_created_idx ON albums (is_published, created_at DESC);
CREATE INDEX albums_order_idx ON albums ("order");
CREATE INDEX photos_album_order_created_idx ON photos (album_id, "order", created_at DESC);
CREATE INDEX photos_album_created_idx ON photos (album_id, created_at DESC);
CREATE INDEX photos_album_order_idx ON photos (album_id, "order");
CREATE INDEX photos_created_idx ON photos (created_at DESC);
