//! What photosctl prints: a progress bar on a terminal, plain lines otherwise (cron logs), and
//! one JSON document on stdout with `--json`. Progress and notes go to stderr, results to
//! stdout, so `--json` output stays parseable.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use photos_proto::jobs::v1 as pb;
use prost_types::Timestamp;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub json: bool,
    /// stderr is a terminal: draw bars instead of lines.
    pub tty: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A result line on stdout (text mode only).
    pub fn line(&self, text: impl AsRef<str>) {
        if !self.json {
            #[allow(clippy::print_stdout)]
            {
                println!("{}", text.as_ref());
            }
        }
    }

    /// The result document on stdout (JSON mode only).
    pub fn document(&self, value: &Value) {
        if self.json {
            #[allow(clippy::print_stdout)]
            {
                println!(
                    "{}",
                    serde_json::to_string_pretty(value).unwrap_or_default()
                );
            }
        }
    }

    /// A note on stderr, in every mode.
    pub fn note(&self, text: impl AsRef<str>) {
        eprintln!("{}", text.as_ref());
    }

    /// Progress of a counted task: a bar on a terminal, else occasional lines on stderr.
    pub fn progress(&self, label: &str) -> Progress {
        let bar = (self.tty && !self.json).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(label.to_owned());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            label: label.to_owned(),
            bar,
            quiet: self.json,
            last_line: None,
        }
    }
}

pub struct Progress {
    label: String,
    bar: Option<ProgressBar>,
    quiet: bool,
    /// (done, total, state) of the last plain line, to print only on a real change.
    last_line: Option<(u64, u64, String)>,
}

impl Progress {
    pub fn update(&mut self, done: u64, total: u64, failed: u64, state: &str) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(if failed > 0 {
                format!("{state}, {failed} failed")
            } else {
                state.to_owned()
            });
            return;
        }
        if self.quiet {
            return;
        }
        // Plain lines: on a state change, at each tenth of the way, and at the end.
        let decile = |d: u64| (d * 10).checked_div(total).unwrap_or(0);
        let changed = match &self.last_line {
            None => true,
            Some((d, t, s)) => {
                s != state
                    || *t != total
                    || decile(*d) != decile(done)
                    || done == total && *d != done
            }
        };
        if changed {
            eprintln!(
                "{}: {state} {done}/{total} done, {failed} failed",
                self.label
            );
            self.last_line = Some((done, total, state.to_owned()));
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish();
        }
    }
}

pub fn kind_name(kind: i32) -> &'static str {
    match pb::JobKind::try_from(kind) {
        Ok(pb::JobKind::WarmCache) => "warm-cache",
        Ok(pb::JobKind::OptimizeImages) => "optimize-images",
        Ok(pb::JobKind::GenerateThumbnails) => "generate-thumbnails",
        Ok(pb::JobKind::CleanupS3) => "cleanup-s3",
        _ => "unknown",
    }
}

pub fn state_name(state: i32) -> &'static str {
    match pb::JobState::try_from(state) {
        Ok(pb::JobState::Queued) => "queued",
        Ok(pb::JobState::Running) => "running",
        Ok(pb::JobState::Succeeded) => "succeeded",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

pub fn item_state_name(state: i32) -> &'static str {
    match pb::ItemState::try_from(state) {
        Ok(pb::ItemState::Pending) => "pending",
        Ok(pb::ItemState::Done) => "done",
        Ok(pb::ItemState::Failed) => "failed",
        _ => "unknown",
    }
}

pub fn is_final(state: i32) -> bool {
    matches!(
        pb::JobState::try_from(state),
        Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
    )
}

/// `2026-11-30T12:34:56Z` (UTC), without a date library.
pub fn rfc3339(t: &Timestamp) -> String {
    let secs = t.seconds;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn time(t: &Option<Timestamp>) -> Value {
    t.as_ref()
        .map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

fn params_json(params: &Option<pb::JobParams>) -> Value {
    use pb::job_params::Params;
    match params.as_ref().and_then(|p| p.params.as_ref()) {
        Some(Params::WarmCache(p)) => json!({
            "album_id": p.album_id, "published_only": p.published_only, "force": p.force,
        }),
        Some(Params::OptimizeImages(p)) => json!({
            "generate_webp": p.generate_webp, "responsive": p.responsive,
            "storage_class": pb::StorageClass::try_from(p.storage_class)
                .map(|c| c.as_str_name().trim_start_matches("STORAGE_CLASS_").to_owned())
                .unwrap_or_default(),
            "album_id": p.album_id,
        }),
        Some(Params::GenerateThumbnails(p)) => json!({
            "missing_only": p.missing_only, "width": p.width, "height": p.height,
            "quality": p.quality, "album_id": p.album_id,
        }),
        Some(Params::CleanupS3(p)) => json!({
            "older_than_days": p.older_than_days, "dry_run": p.dry_run, "archive": p.archive,
        }),
        None => Value::Null,
    }
}

pub fn job_json(job: &pb::Job) -> Value {
    json!({
        "id": job.id,
        "kind": kind_name(job.kind),
        "state": state_name(job.state),
        "params": params_json(&job.params),
        "workers": job.workers,
        "total": job.total,
        "done": job.done,
        "failed": job.failed,
        "total_bytes": job.total_bytes,
        "done_bytes": job.done_bytes,
        "cancel_requested": job.cancel_requested,
        "error": job.error,
        "claims": job.claims,
        "trace_id": job.trace_id,
        "created": time(&job.create_time),
        "started": time(&job.start_time),
        "finished": time(&job.finish_time),
    })
}

pub fn item_json(item: &pb::JobItem) -> Value {
    json!({
        "seq": item.seq,
        "key": item.key,
        "state": item_state_name(item.state),
        "bytes": item.bytes,
        "attempts": item.attempts,
        "error": item.error,
    })
}

/// `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A few lines describing a job, for text mode.
pub fn job_text(job: &pb::Job) -> String {
    let mut lines = vec![
        format!(
            "job {} {} {}: {}/{} done, {} failed",
            job.id,
            kind_name(job.kind),
            state_name(job.state),
            job.done,
            job.total,
            job.failed
        ),
        format!("  params   {}", params_json(&job.params)),
    ];
    if job.total_bytes > 0 {
        lines.push(format!(
            "  bytes    {} of {}",
            bytes(job.done_bytes),
            bytes(job.total_bytes)
        ));
    }
    if let Some(t) = &job.create_time {
        lines.push(format!("  created  {}", rfc3339(t)));
    }
    if let Some(t) = &job.finish_time {
        lines.push(format!("  finished {}", rfc3339(t)));
    }
    if job.claims > 1 {
        lines.push(format!("  resumed  {} times", job.claims - 1));
    }
    if job.cancel_requested && !is_final(job.state) {
        lines.push("  cancelling".into());
    }
    if !job.error.is_empty() {
        lines.push(format!("  error    {}", job.error));
    }
    if !job.trace_id.is_empty() {
        lines.push(format!("  trace    {}", job.trace_id));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_dates() {
        let at = |seconds| rfc3339(&Timestamp { seconds, nanos: 0 });
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(at(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
