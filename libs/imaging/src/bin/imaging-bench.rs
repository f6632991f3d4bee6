//! Side-by-side benchmark: photos-imaging vs libvips (pyvips) vs Pillow on real photos, each
//! producing the full derivative set (5 sizes × progressive JPEG + WebP q85 m6), plus the WebP
//! method 4 vs 6 trade-off. Not a test: it prints figures and ratios.
//!
//! `cargo run --release -p photos-imaging --bin imaging-bench -- [--photos DIR] [--limit N]`
//!
//! Each contender runs in its own child process so peak RSS (VmHWM) is per photo and per tool.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use photos_imaging::{ProcessOptions, WebpOptions, process};

#[derive(Debug, Clone)]
struct Run {
    variants: Vec<(String, String, u32, u32, u64)>,
    wall: f64,
    cpu: f64,
    rss_kb: u64,
}

fn cpu_seconds() -> f64 {
    // utime + stime of the whole process (all threads), in clock ticks of 1/100 s.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// CPU seconds of the calling thread only (utime + stime, 1/100 s ticks).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Where the CPU of one photo goes: each stage of the pipeline run on this thread alone,
/// `reps` times (the tick is 10 ms), in the order `process` runs them.
fn stages(path: &Path, reps: usize) {
    use photos_imaging::geometry::plan;
    use photos_imaging::{
        Fit, Window, decode, default_presets, encode_jpeg, encode_webp, probe, resize,
    };
    let bytes = std::fs::read(path).expect("read photo");
    let time = |label: &str, f: &mut dyn FnMut()| {
        let (t0, c0) = (Instant::now(), thread_cpu_seconds());
        for _ in 0..reps {
            f();
        }
        let n = reps as f64;
        let (cpu, wall) = (
            (thread_cpu_seconds() - c0) / n,
            t0.elapsed().as_secs_f64() / n,
        );
        println!("  {label:<34} cpu {cpu:>7.3} s  wall {wall:>7.3} s");
        cpu
    };
    let limits = Default::default();
    let mut info = None;
    let mut total = time("probe (header, exif, sha256)", &mut || {
        info = Some(probe(&bytes, &limits).expect("probe"));
    });
    let info = info.expect("probed");
    let (w, h) = (info.width, info.height);
    let presets = default_presets();
    let plans: Vec<_> = presets
        .iter()
        .map(|p| plan(w, h, p.width, p.height, p.fit))
        .collect();
    let need = plans
        .iter()
        .map(|p| p.needed_frame(w, h))
        .fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    let mut base = None;
    total += time(
        &format!("decode (needs {}x{})", need.0, need.1),
        &mut || {
            base = Some(decode(&bytes, &info, need.0, need.1, &limits).expect("decode"));
        },
    );
    let base = base.expect("decoded");
    println!("    decoded frame {}x{}", base.width, base.height);
    let full = |r: &photos_imaging::Raster| Window {
        left: 0.0,
        top: 0.0,
        width: f64::from(r.width),
        height: f64::from(r.height),
    };
    // The cascade as the pipeline runs it: xlarge from the frame, each smaller from the last.
    let mut outs: Vec<(String, photos_imaging::Raster)> = vec![];
    for (p, pl) in presets.iter().zip(&plans).rev() {
        let src = outs
            .iter()
            .filter(|(n, _)| n != "thumbnail")
            .map(|(_, r)| r)
            .rfind(|r| {
                let (nw, nh) = pl.needed_frame(w, h);
                r.width >= nw && r.height >= nh
            })
            .unwrap_or(&base);
        let window = match p.fit {
            Fit::Inside => full(src),
            Fit::Cover => {
                let (sx, sy) = (
                    f64::from(src.width) / f64::from(w),
                    f64::from(src.height) / f64::from(h),
                );
                photos_imaging::smart_window(src, pl.crop_w * sx, pl.crop_h * sy)
            }
        };
        let mut out = None;
        total += time(
            &format!(
                "resize {} {}x{} from {}x{}",
                p.name, pl.out_w, pl.out_h, src.width, src.height
            ),
            &mut || {
                out = Some(resize(src, window, pl.out_w, pl.out_h));
            },
        );
        outs.push((p.name.clone(), out.expect("resized")));
    }
    let mut webp4 = 0.0;
    for (name, r) in &outs {
        let p = presets.iter().find(|p| &p.name == name).expect("preset");
        let mut n = 0;
        total += time(&format!("jpeg {name} q{}", p.jpeg_quality), &mut || {
            n = encode_jpeg(r, p.jpeg_quality).expect("jpeg").len();
        });
        let mut n6 = 0;
        total += time(&format!("webp {name} q{} m6", p.webp_quality), &mut || {
            n6 = encode_webp(
                r,
                p.webp_quality,
                WebpOptions {
                    method: 6,
                    lossless: false,
                },
            )
            .expect("webp")
            .len();
        });
        let mut n4 = 0;
        webp4 += time(
            &format!("webp {name} q{} m4 (not in total)", p.webp_quality),
            &mut || {
                n4 = encode_webp(
                    r,
                    p.webp_quality,
                    WebpOptions {
                        method: 4,
                        lossless: false,
                    },
                )
                .expect("webp")
                .len();
            },
        );
        if name == "xlarge" {
            // libwebp's second thread: the calling thread's share is what remains on the
            // critical path when another core is free.
            let c0 = cpu_seconds();
            let mut n6t = 0;
            let own = time("webp xlarge m6 thread_level=1 (caller)", &mut || {
                n6t = photos_imaging::encode_webp_threads(
                    r,
                    p.webp_quality,
                    WebpOptions {
                        method: 6,
                        lossless: false,
                    },
                    true,
                )
                .expect("webp")
                .len();
            });
            let all = (cpu_seconds() - c0) / reps as f64;
            println!("    with its helper thread: cpu {all:.3} s (caller {own:.3} s); bytes {n6t}");
        }
        println!("    bytes: jpeg {n}, webp m6 {n6}, webp m4 {n4}");
    }
    println!("  total cpu (one thread, m6): {total:.3} s; webp m4 encodes: {webp4:.3} s");
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn one(path: &Path, method: u8) {
    let bytes = std::fs::read(path).expect("read photo");
    let options = ProcessOptions {
        webp: WebpOptions {
            method,
            lossless: false,
        },
        ..ProcessOptions::default()
    };
    let (t0, c0) = (Instant::now(), cpu_seconds());
    // `--rss-trace`: resident set every 10 ms on stderr, to see which stage holds the peak.
    let tracing_rss = std::env::args().any(|a| a == "--rss-trace");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        if tracing_rss {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let rss = std::fs::read_to_string("/proc/self/status")
                        .unwrap_or_default()
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
                        .unwrap_or_default();
                    eprintln!("{:>6.0} ms rss {rss}", t0.elapsed().as_secs_f64() * 1e3);
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            });
        }
        let out = process(&bytes, &options).expect("process");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    });
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    for v in &out.variants {
        let f = match v.format {
            photos_imaging::OutputFormat::Jpeg => "jpeg",
            photos_imaging::OutputFormat::WebP => "webp",
        };
        println!(
            "variant {} {} {} {} {}",
            v.preset,
            f,
            v.width,
            v.height,
            v.bytes.len()
        );
    }
    println!("stats {wall:.4} {cpu:.4} {}", peak_rss_kb());
}

fn parse(out: &str) -> Option<Run> {
    let mut run = Run {
        variants: vec![],
        wall: 0.0,
        cpu: 0.0,
        rss_kb: 0,
    };
    let mut seen_stats = false;
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first() {
            Some(&"variant") if f.len() == 6 => run.variants.push((
                f[1].to_string(),
                f[2].to_string(),
                f[3].parse().ok()?,
                f[4].parse().ok()?,
                f[5].parse().ok()?,
            )),
            Some(&"stats") if f.len() == 4 => {
                run.wall = f[1].parse().ok()?;
                run.cpu = f[2].parse().ok()?;
                run.rss_kb = f[3].parse().ok()?;
                seen_stats = true;
            }
            _ => {}
        }
    }
    seen_stats.then_some(run)
}

fn child(cmd: &mut Command) -> Option<Run> {
    let out = cmd.output().ok()?;
    if !out.status.success() {
        eprintln!(
            "  child failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn total(r: &Run) -> u64 {
    r.variants.iter().map(|v| v.4).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(path) = arg("--stages") {
        let reps = arg("--reps").and_then(|m| m.parse().ok()).unwrap_or(3);
        stages(Path::new(&path), reps);
        return;
    }
    if let Some(path) = arg("--one") {
        let method = arg("--method").and_then(|m| m.parse().ok()).unwrap_or(6);
        one(Path::new(&path), method);
        return;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    // The extracted packages (see the README), else the packages installed with apt.
    let dir = arg("--photos").map(PathBuf::from).unwrap_or_else(|| {
        let cached = PathBuf::from(format!(
            "{home}/.cache/photos/bench-photos/x/usr/share/backgrounds"
        ));
        if cached.is_dir() {
            cached
        } else {
            PathBuf::from("/usr/share/backgrounds")
        }
    });
    let limit: usize = arg("--limit").and_then(|v| v.parse().ok()).unwrap_or(4);
    let mut photos: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "photo dir {}: {e} (see services/media/README.md)",
                dir.display()
            )
        })
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("jpg")))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.len(), p)))
        .collect();
    // Largest files first: the 12-20 MP photos the issue is about.
    photos.sort_by_key(|p| std::cmp::Reverse(p.0));
    photos.truncate(limit);
    let me = std::env::current_exe().expect("own path");
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/peers.py");
    let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "imaging-bench: {} photos from {}, {threads} cores; full set = 5 sizes x (progressive JPEG + WebP q85)",
        photos.len(),
        dir.display()
    );
    println!(
        "cpu = user+sys of the whole process during the work; rss = peak resident set (VmHWM) of the child (python peers include the interpreter)\n"
    );

    let mut sums = [[0.0f64; 3]; 4];
    let mut counted = 0usize;
    for (_, path) in &photos {
        let bytes = std::fs::read(path).expect("read");
        let info = photos_imaging::probe(&bytes, &Default::default()).expect("probe");
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        println!(
            "== {name}: {}x{} ({:.1} MP), {:.1} MB",
            info.width,
            info.height,
            f64::from(info.width) * f64::from(info.height) / 1e6,
            bytes.len() as f64 / 1e6
        );
        let ours = child(
            Command::new(&me)
                .arg("--one")
                .arg(path)
                .args(["--method", "6"]),
        );
        let ours_m4 = child(
            Command::new(&me)
                .arg("--one")
                .arg(path)
                .args(["--method", "4"]),
        );
        let vips = child(Command::new("python3").arg(&peers).arg("vips").arg(path));
        let pillow = child(Command::new("python3").arg(&peers).arg("pillow").arg(path));
        let runs = [
            ("photos-imaging", &ours),
            ("libvips", &vips),
            ("pillow", &pillow),
            ("ours webp m4", &ours_m4),
        ];
        println!(
            "  {:<16} {:>8} {:>8} {:>9} {:>10}",
            "tool", "wall s", "cpu s", "rss MB", "bytes"
        );
        for (label, r) in &runs {
            match r {
                Some(r) => println!(
                    "  {label:<16} {:>8.3} {:>8.3} {:>9.1} {:>10}",
                    r.wall,
                    r.cpu,
                    r.rss_kb as f64 / 1024.0,
                    total(r)
                ),
                None => println!("  {label:<16} (not run)"),
            }
        }
        if let Some(o) = &ours {
            println!(
                "  per derivative (bytes): {:<22} {:>10} {:>10} {:>10}",
                "preset fmt WxH", "ours", "vips", "pillow"
            );
            for v in &o.variants {
                let find = |r: &Option<Run>| {
                    r.as_ref()
                        .and_then(|r| r.variants.iter().find(|x| x.0 == v.0 && x.1 == v.1))
                        .map_or("-".to_string(), |x| format!("{} ({}x{})", x.4, x.2, x.3))
                };
                println!(
                    "    {:<34} {:>10} {:>22} {:>22}",
                    format!("{} {} {}x{}", v.0, v.1, v.2, v.3),
                    v.4,
                    find(&vips),
                    find(&pillow)
                );
            }
            if let (Some(v), Some(p)) = (&vips, &pillow) {
                println!(
                    "  ratios ours/vips: cpu {:.2}x wall {:.2}x bytes {:.2}x | ours/pillow: cpu {:.2}x wall {:.2}x | pillow/ours speed-up (cpu) {:.2}x",
                    o.cpu / v.cpu,
                    o.wall / v.wall,
                    total(o) as f64 / total(v) as f64,
                    o.cpu / p.cpu,
                    o.wall / p.wall,
                    p.cpu / o.cpu
                );
                for (i, r) in [o, v, p].iter().enumerate() {
                    sums[i][0] += r.cpu;
                    sums[i][1] += r.wall;
                    sums[i][2] = sums[i][2].max(r.rss_kb as f64 / 1024.0);
                }
                counted += 1;
            }
            if let Some(m4) = &ours_m4 {
                let webp = |r: &Run| {
                    r.variants
                        .iter()
                        .filter(|v| v.1 == "webp")
                        .map(|v| v.4)
                        .sum::<u64>()
                };
                println!(
                    "  webp method 4 vs 6: wall {:.3}s vs {:.3}s ({:.2}x), cpu {:.3}s vs {:.3}s, webp bytes {} vs {} (+{:.1}%)",
                    m4.wall,
                    o.wall,
                    m4.wall / o.wall,
                    m4.cpu,
                    o.cpu,
                    webp(m4),
                    webp(o),
                    (webp(m4) as f64 / webp(o) as f64 - 1.0) * 100.0
                );
            }
        }
        println!();
    }
    if counted > 0 {
        let n = counted as f64;
        println!("== mean over {counted} photos: cpu s / wall s per photo, max peak rss MB");
        for (i, label) in ["photos-imaging", "libvips", "pillow"].iter().enumerate() {
            println!(
                "  {label:<16} cpu {:.3}  wall {:.3}  rss {:.1}",
                sums[i][0] / n,
                sums[i][1] / n,
                sums[i][2]
            );
        }
        println!(
            "  ratios: cpu ours/vips {:.2}x (target <= 0.75x), cpu pillow/ours {:.2}x (target >= 2x), wall ours/vips {:.2}x",
            sums[0][0] / sums[1][0],
            sums[2][0] / sums[0][0],
            sums[0][1] / sums[1][1]
        );
    }
}
