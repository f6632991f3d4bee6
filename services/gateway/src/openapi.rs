//! The OpenAPI 3.1 document of the v1 HTTP API, served at `/api/openapi.json`.

use axum::Json;

pub async fn document() -> Json<serde_json::Value> {
    let problem = serde_json::json!({"$ref": "#/components/schemas/Problem"});
    let op = |summary: &str, auth: bool| {
        let mut o = serde_json::json!({
            "summary": summary,
            "responses": {"default": {"description": "error", "content": {"application/problem+json": {"schema": problem}}}},
        });
        if auth {
            o["security"] = serde_json::json!([{"bearer": []}]);
        }
        o
    };
    let photo = serde_json::json!({"$ref": "#/components/schemas/Photo"});
    let mut upload = op(
        "Upload a photo: multipart/form-data with the image in field `file` and optional `title` and `caption`. \
         Streamed to storage (never buffered whole), processed by media, recorded by the catalog. \
         201 with the photo; 200 with the existing photo when the album already has these bytes. \
         Not an image: 422, nothing kept. Above `upload.max_bytes`: 413. \
         `Idempotency-Key`: the same key and request replay the first outcome (`Idempotent-Replayed: true`); \
         the same key with a different request is 422; while the first is running, 409",
        true,
    );
    upload["parameters"] = serde_json::json!([{
        "name": "Idempotency-Key", "in": "header", "required": false,
        "schema": {"type": "string", "maxLength": 255},
    }]);
    upload["requestBody"] = serde_json::json!({"required": true, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "title": {"type": "string"}, "caption": {"type": "string"},
        },
    }}}});
    upload["responses"]["201"] = serde_json::json!({"description": "created", "content": {"application/json": {"schema": photo}}});
    upload["responses"]["200"] = serde_json::json!({"description": "the album already had these bytes, or a replay", "content": {"application/json": {"schema": photo}}});
    let job = serde_json::json!({"$ref": "#/components/schemas/Job"});
    let mut regenerate = op(
        "Start regenerating thumbnails (admin): a durable `generate-thumbnails` job run by the catalog's workers, \
         one item per photo (media re-derives the thumbnail in JPEG and WebP from the original; the catalog records it). \
         No body: every photo of every album. 202 with the queued job and `Location: /api/v1/admin/jobs/{id}`. \
         `Idempotency-Key`: a retry with the same key returns the same job",
        true,
    );
    regenerate["parameters"] = serde_json::json!([{
        "name": "Idempotency-Key", "in": "header", "required": false,
        "schema": {"type": "string", "maxLength": 255},
    }]);
    regenerate["requestBody"] = serde_json::json!({"required": false, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": false,
        "properties": {
            "album_id": {"type": "string", "description": "one album; absent for every album"},
            "missing_only": {"type": "boolean", "description": "only photos without a JPEG thumbnail"},
            "workers": {"type": "integer", "minimum": 1, "maximum": 16, "description": "photos processed at once; absent for the catalog's default (4)"},
        },
    }}}});
    regenerate["responses"]["202"] = serde_json::json!({
        "description": "queued", "headers": {"Location": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": job}},
    });
    let mut get_job = op(
        "A job's progress (admin); poll until `finished`. Unknown id: 404",
        true,
    );
    get_job["responses"]["200"] = serde_json::json!({"description": "the job now", "content": {"application/json": {"schema": job}}});
    Json(serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "photos gateway", "version": "v1"},
        "paths": {
            "/api/v1/albums": {
                "get": op("List published albums (or `?mine=true` for your own), keyset-paged with `page_size` and `page_token`", false),
                "post": op("Create an album (owner or admin)", true),
            },
            "/api/v1/albums/{id}": {
                "get": op("An album with its first page of photos", false),
                "patch": op("Update title, description, is_published, order or cover_photo_id", true),
                "delete": op("Delete an album, its photos and their objects", true),
            },
            "/api/v1/albums/{id}/photos": {
                "get": op("Photos of an album, keyset-paged", false),
                "post": upload,
            },
            "/api/v1/albums/{id}/photos/order": {
                "put": op("Reorder an album's photos `{\"photo_ids\": [...]}` (owner or admin); each photo's order becomes its position", true),
            },
            "/api/v1/photos/recent": {"get": op("Most recent photos of published albums", false)},
            "/api/v1/photos/{id}": {
                "get": op("One photo with its responsive sources and placeholders", false),
                "delete": op("Delete a photo and its objects", true),
            },
            "/api/v1/admin/albums/publish": {"post": op("Publish albums `{\"album_ids\": [...]}` (admin)", true)},
            "/api/v1/admin/albums/unpublish": {"post": op("Unpublish albums (admin)", true)},
            "/api/v1/admin/albums/reorder": {"post": op("Set the album order `{\"album_ids\": [...]}` (admin); each album's order becomes its position", true)},
            "/api/v1/admin/cache-stats": {"get": op("Cache statistics (admin)", true)},
            "/api/v1/admin/performance": {"get": op("The mesh's performance report (admin)", true)},
            "/api/v1/admin/jobs/regenerate-thumbnails": {"post": regenerate},
            "/api/v1/admin/jobs/{id}": {"get": get_job},
            "/healthz": {"get": {"summary": "200 while serving, 503 while draining", "responses": {"200": {"description": "ok"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "description": "RFC 9457; 429 answers also carry Retry-After (seconds)",
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                        "detail": {"type": "string"}, "kind": {"type": "string"},
                    },
                },
                "Source": {
                    "type": "object",
                    "description": "One variant. `url` is a CDN URL for published albums (when a CDN is configured), else a short-lived signed URL",
                    "properties": {
                        "preset": {"type": "string"}, "format": {"enum": ["jpeg", "webp", "png", "gif"]},
                        "width": {"type": "integer"}, "height": {"type": "integer"}, "bytes": {"type": "integer"},
                        "url": {"type": "string", "format": "uri"},
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "kind": {"enum": ["generate-thumbnails", "optimize-images", "warm-cache", "cleanup-s3"]},
                        "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
                        "total": {"type": "integer", "description": "items (photos); 0 until listed"},
                        "done": {"type": "integer", "description": "items finished, failed ones included"},
                        "failed": {"type": "integer"},
                        "percent": {"type": "integer", "minimum": 0, "maximum": 100},
                        "finished": {"type": "boolean", "description": "in a final state"},
                        "error": {"type": "string", "description": "why a failed job could not run"},
                        "created_at": {"type": ["string", "null"]}, "started_at": {"type": ["string", "null"]},
                        "finished_at": {"type": ["string", "null"]},
                    },
                },
                "Photo": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "album_id": {"type": "string"}, "title": {"type": "string"},
                        "caption": {"type": "string"}, "order": {"type": "integer"},
                        "width": {"type": "integer"}, "height": {"type": "integer"}, "bytes": {"type": "integer"},
                        "format": {"type": "string"}, "status": {"enum": ["pending", "ready", "failed"]},
                        "taken_at": {"type": ["string", "null"]}, "created_at": {"type": ["string", "null"]},
                        "placeholders": {"type": "object", "properties": {
                            "dominant_color": {"type": "string", "description": "#rrggbb"},
                            "blur_data_uri": {"type": "string"}, "blurhash": {"type": "string"}, "thumbhash": {"type": "string"},
                        }},
                        "sources": {"type": "array", "items": {"$ref": "#/components/schemas/Source"}},
                        "srcset": {"type": "object", "description": "per format, a srcset of the variants with the photo's aspect ratio", "additionalProperties": {"type": "string"}},
                    },
                },
            },
        },
    }))
}
