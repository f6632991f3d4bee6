//! The catalog's API tests: one suite, instantiated for Postgres (a database per test) and for
//! the embedded SQLite database, each test against the real service over gRPC.

mod cache;
mod explain;
mod helpers;
mod report;
mod suite;

/// Generates `postgres::<test>` and `sqlite::<test>` for every test function of the suite.
macro_rules! for_each_backend {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::suite::$test(crate::helpers::Backend::Postgres).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    crate::suite::$test(crate::helpers::Backend::Sqlite).await
                }
            )*
        }
    };
}

for_each_backend!(
    album_crud_round_trips,
    list_albums_is_one_statement_with_counts_and_previews,
    list_albums_stays_one_statement_with_50_albums_of_50_photos,
    keyset_pages_have_no_duplicates_or_gaps,
    published_filter_and_order_then_newest,
    reupload_of_the_same_bytes_returns_the_existing_photo,
    concurrent_duplicate_uploads_make_exactly_one_row,
    deletes_return_every_object_key,
    deletes_keep_keys_another_photo_still_references,
    bad_input_gets_the_right_code_and_writes_nothing,
    tampered_or_foreign_page_tokens_are_invalid_argument,
    photo_for_a_deleted_album_is_not_found,
    order_overflow_is_refused,
    album_detail_is_at_most_two_statements,
    media_results_upsert_variants_and_feed_missing_variant_lists,
    reorder_and_batch_publish,
    recent_photos_page_newest_first,
    stats_and_object_key_stream,
    slow_statements_are_counted_over_the_threshold,
    no_read_after_a_write_is_stale,
    the_refresh_flag_recomputes_and_refills,
    with_the_cache_off_every_read_runs_its_sql,
);
