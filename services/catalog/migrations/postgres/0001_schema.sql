-- Albums, photos and their variants. Timestamps are microseconds since the Unix epoch (UTC) in
-- BIGINT columns: the same encoding on Postgres and SQLite, so one set of queries and one
-- page-token format serve both stores.
CREATE TABLE albums (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    title          TEXT    NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
    description    TEXT    NOT NULL DEFAULT '',
    owner_id       TEXT    NOT NULL DEFAULT '',
    is_published   BOOLEAN NOT NULL DEFAULT FALSE,
    "order"        INTEGER NOT NULL DEFAULT 0 CHECK ("order" BETWEEN 0 AND 2147483647),
    cover_photo_id BIGINT,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE photos (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    album_id         BIGINT   NOT NULL REFERENCES albums (id) ON DELETE CASCADE,
    title            TEXT     NOT NULL DEFAULT '',
    caption          TEXT     NOT NULL DEFAULT '',
    "order"          INTEGER  NOT NULL CHECK ("order" BETWEEN 0 AND 2147483647),
    original_key     TEXT     NOT NULL,
    content_sha256   TEXT     NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
    width            INTEGER  NOT NULL DEFAULT 0,
    height           INTEGER  NOT NULL DEFAULT 0,
    bytes            BIGINT   NOT NULL DEFAULT 0,
    format           SMALLINT NOT NULL DEFAULT 0,
    taken_at         BIGINT,
    dominant_color   TEXT     NOT NULL DEFAULT '',
    blur_placeholder TEXT     NOT NULL DEFAULT '',
    blurhash         TEXT     NOT NULL DEFAULT '',
    thumbhash        TEXT     NOT NULL DEFAULT '',
    -- 1 pending, 2 ready, 3 failed (photos.catalog.v1.PhotoStatus).
    status           SMALLINT NOT NULL DEFAULT 1 CHECK (status IN (1, 2, 3)),
    failure_reason   TEXT     NOT NULL DEFAULT '',
    created_at       BIGINT   NOT NULL,
    updated_at       BIGINT   NOT NULL,
    -- A re-upload of the same bytes into the same album finds this row instead of adding one.
    CONSTRAINT photos_album_content_key UNIQUE (album_id, content_sha256)
);

ALTER TABLE albums
    ADD CONSTRAINT albums_cover_photo_fkey
    FOREIGN KEY (cover_photo_id) REFERENCES photos (id) ON DELETE SET NULL;

CREATE TABLE photo_variants (
    photo_id   BIGINT   NOT NULL REFERENCES photos (id) ON DELETE CASCADE,
    preset     TEXT     NOT NULL,
    format     SMALLINT NOT NULL,
    object_key TEXT     NOT NULL,
    width      INTEGER  NOT NULL DEFAULT 0,
    height     INTEGER  NOT NULL DEFAULT 0,
    bytes      BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (photo_id, preset, format)
);

-- The seed's indexes. Lists are ordered by "order" then newest first, so created_at is stored
-- descending: the index order is the list order and a page is an index range.
CREATE INDEX albums_published_order_created_idx ON albums (is_published, "order", created_at DESC);
CREATE INDEX albums_published_created_idx ON albums (is_published, created_at DESC);
CREATE INDEX albums_order_idx ON albums ("order");
CREATE INDEX photos_album_order_created_idx ON photos (album_id, "order", created_at DESC);
CREATE INDEX photos_album_created_idx ON photos (album_id, created_at DESC);
-- A prefix of photos_album_order_created_idx, kept because the seed lists it.
CREATE INDEX photos_album_order_idx ON photos (album_id, "order");
-- Not in the seed: the cross-album "recent photos" feed would otherwise scan every photo.
CREATE INDEX photos_created_idx ON photos (created_at DESC);
