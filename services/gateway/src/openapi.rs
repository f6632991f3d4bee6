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
                "post": op("Upload a photo (multipart field `file`) — not implemented yet", true),
            },
            "/api/v1/photos/recent": {"get": op("Most recent photos of published albums", false)},
            "/api/v1/photos/{id}": {
                "get": op("One photo with its responsive sources and placeholders", false),
                "delete": op("Delete a photo and its objects", true),
            },
            "/api/v1/admin/albums/publish": {"post": op("Publish albums `{\"album_ids\": [...]}` (admin)", true)},
            "/api/v1/admin/albums/unpublish": {"post": op("Unpublish albums (admin)", true)},
            "/api/v1/admin/cache-stats": {"get": op("Cache statistics (admin)", true)},
            "/api/v1/admin/performance": {"get": op("The mesh's performance report (admin)", true)},
            "/healthz": {"get": {"summary": "200 while serving, 503 while draining", "responses": {"200": {"description": "ok"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Problem": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"}, "kind": {"type": "string"},
                },
            }},
        },
    }))
}
