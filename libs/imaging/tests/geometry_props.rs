use photos_imaging::best_window;
use photos_imaging::geometry::{Fit, jpeg_scale_eighths, plan};
use proptest::prelude::*;

proptest! {
    #[test]
    fn inside_fits_the_box_keeps_aspect_and_never_upscales(
        sw in 1u32..20_000, sh in 1u32..20_000, bw in 1u32..4_000, bh in 1u32..4_000
    ) {
        let p = plan(sw, sh, bw, bh, Fit::Inside);
        prop_assert!(p.out_w >= 1 && p.out_h >= 1);
        prop_assert!(p.out_w <= bw && p.out_h <= bh);
        prop_assert!(p.out_w <= sw && p.out_h <= sh);
        prop_assert!(p.scale <= 1.0);
        // Each side is the exact scaled side, rounded (or clamped to 1 px).
        let ew = f64::from(sw) * p.scale;
        let eh = f64::from(sh) * p.scale;
        prop_assert!((f64::from(p.out_w) - ew).abs() <= 0.5 + 1e-9 || p.out_w == 1);
        prop_assert!((f64::from(p.out_h) - eh).abs() <= 0.5 + 1e-9 || p.out_h == 1);
        // Tight: one side touches the box, or the source is returned at full size.
        prop_assert!(p.out_w == bw || p.out_h == bh || (p.out_w == sw && p.out_h == sh));
    }

    #[test]
    fn cover_fills_the_box_with_a_crop_of_the_same_aspect(
        sw in 1u32..20_000, sh in 1u32..20_000, bw in 1u32..4_000, bh in 1u32..4_000
    ) {
        let p = plan(sw, sh, bw, bh, Fit::Cover);
        prop_assert_eq!(p.out_w, bw.min(sw));
        prop_assert_eq!(p.out_h, bh.min(sh));
        prop_assert!(p.scale <= 1.0);
        prop_assert!(p.crop_w <= f64::from(sw) + 1e-9 && p.crop_h <= f64::from(sh) + 1e-9);
        prop_assert!(p.crop_w >= f64::from(p.out_w) - 1e-9 && p.crop_h >= f64::from(p.out_h) - 1e-9);
        // The crop is scaled uniformly unless a side is clamped to the source.
        if p.crop_w < f64::from(sw) && p.crop_h < f64::from(sh) {
            let ax = f64::from(p.out_w) / p.crop_w;
            let ay = f64::from(p.out_h) / p.crop_h;
            prop_assert!((ax - ay).abs() < 1e-9);
        }
    }

    #[test]
    fn jpeg_scaling_is_the_largest_reduction_that_still_covers(
        sw in 1u32..20_000, sh in 1u32..20_000, nw in 1u32..5_000, nh in 1u32..5_000
    ) {
        let (nw, nh) = (nw.min(sw), nh.min(sh));
        let n = jpeg_scale_eighths(sw, sh, nw, nh);
        prop_assert!((1..=8).contains(&n));
        let scaled = |side: u32, n: u32| (side * n).div_ceil(8);
        prop_assert!(scaled(sw, n) >= nw && scaled(sh, n) >= nh);
        if n > 1 {
            prop_assert!(scaled(sw, n - 1) < nw || scaled(sh, n - 1) < nh);
        }
    }

    #[test]
    fn best_window_is_an_argmax(energy in prop::collection::vec(0u64..1000, 1..200), win in 1usize..200) {
        let win = win.min(energy.len());
        let start = best_window(&energy, win);
        prop_assert!(start + win <= energy.len());
        let sum = |s: usize| energy[s..s + win].iter().sum::<u64>();
        let best = (0..=energy.len() - win).map(sum).max().unwrap();
        prop_assert_eq!(sum(start), best);
    }
}
