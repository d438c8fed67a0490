//! The seeded generator (values pinned so it never changes silently) and the built-in filters.

use convc_tensor::{filters, random};

#[test]
fn splitmix64_reference_outputs() {
    // The published SplitMix64 outputs for seed 0, and seed 1.
    let mut g = random::SplitMix64::new(0);
    assert_eq!(
        [g.next_u64(), g.next_u64(), g.next_u64()],
        [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f]
    );
    let mut g = random::SplitMix64::new(1);
    assert_eq!(
        [g.next_u64(), g.next_u64(), g.next_u64()],
        [0x910a2dec89025cc1, 0xbeeb8da1658eec67, 0xf893a2eefb32555e]
    );
    let mut g = random::SplitMix64::new(0);
    assert_eq!(
        g.next_unit(),
        (0xe220a8397b1dcdafu64 >> 40) as f64 / 16_777_216.0
    );
}

#[test]
fn fnv1a_seeds() {
    assert_eq!(random::seed_from_name(""), 0xcbf29ce484222325);
    assert_eq!(random::seed_from_name("a"), 0xaf63dc4c8601ec8c);
    assert_eq!(random::seed_from_name("conv1"), 0x65da2a8e19f1d9c2);
    assert_eq!(random::param_seed("bn1", "var"), 0x1a09ea5eea69b927);
    assert_eq!(
        random::param_seed("bn1", "var"),
        random::seed_from_name("bn1.var")
    );
}

// The pinned values below were computed with the NumPy recipe in the module documentation.

#[test]
fn he_uniform_pinned() {
    assert_eq!(
        random::he_uniform(1, 4, 27),
        [0.0627548, 0.23172523, 0.4440656, -0.052458666]
    );
    assert_eq!(
        random::he_uniform(42, 4, 9),
        [0.3944738, -0.555364, -0.36154288, -0.2544356]
    );
    assert_eq!(
        random::he_uniform(random::seed_from_name("conv1"), 3, 27),
        [-0.3354329, -0.1549108, -0.2733416]
    );
}

#[test]
fn bias_and_batchnorm_pinned() {
    assert_eq!(
        random::bias_uniform(1, 4, 27),
        [0.02561954, 0.09460143, 0.18128902, -0.021416161]
    );
    let centred = [-0.02203406, -0.09664235, 0.08015213, 0.016586054];
    let around_one = [0.8898297, 0.51678824, 1.4007607, 1.0829303];
    assert_eq!(random::bn_mean(7, 4), centred);
    assert_eq!(random::bn_beta(7, 4), centred);
    assert_eq!(random::bn_var(7, 4), around_one);
    assert_eq!(random::bn_gamma(7, 4), around_one);
}

#[test]
fn ranges_hold_over_many_values() {
    let n = 100_000;
    let b = (6.0f64 / 75.0).sqrt() as f32;
    let w = random::he_uniform(3, n, 75);
    assert!(w.iter().all(|v| v.abs() <= b));
    let mean: f64 = w.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    assert!(mean.abs() < 0.01, "{mean}");
    assert!(w.iter().any(|&v| v > 0.99 * b) && w.iter().any(|&v| v < -0.99 * b));
    let bias = random::bias_uniform(3, n, 75);
    assert!(bias.iter().all(|v| v.abs() <= 1.0 / 75f32.sqrt()));
    assert!(random::bn_var(5, n).iter().all(|v| (0.5..=1.5).contains(v)));
    assert!(
        random::bn_mean(5, n)
            .iter()
            .all(|v| (-0.1..=0.1).contains(v))
    );
    // A fan-in of 0 counts as 1 rather than giving infinities.
    assert!(
        random::he_uniform(1, 10, 0)
            .iter()
            .all(|v| v.is_finite() && v.abs() <= 6f32.sqrt())
    );
    // Prefixes agree: n values are the first n of a longer run.
    assert_eq!(
        random::he_uniform(9, 5, 3),
        random::he_uniform(9, 50, 3)[..5]
    );
}

#[test]
fn gaussian_pinned_and_normalised() {
    let g = filters::gaussian(3, 3, 1.0).unwrap();
    assert_eq!(
        g,
        [
            0.07511361,
            0.123841405,
            0.07511361,
            0.123841405,
            0.20417996,
            0.123841405,
            0.07511361,
            0.123841405,
            0.07511361,
        ]
    );
    // Even width: the centre is a half-integer, so the kernel is symmetric about it.
    assert_eq!(
        filters::gaussian(2, 4, 0.8).unwrap(),
        [
            0.043322053,
            0.20667794,
            0.20667794,
            0.043322053,
            0.043322053,
            0.20667794,
            0.20667794,
            0.043322053,
        ]
    );
    assert_eq!(
        filters::gaussian(5, 1, 2.0).unwrap(),
        [0.15246914, 0.22184129, 0.25137913, 0.22184129, 0.15246914]
    );
    assert_eq!(filters::gaussian(2, 2, 0.3).unwrap(), [0.25; 4]);
    assert_eq!(filters::gaussian(1, 1, 5.0).unwrap(), [1.0]);
    for (kh, kw, s) in [(7, 7, 1.5), (5, 3, 0.1), (11, 2, 100.0)] {
        let sum: f32 = filters::gaussian(kh, kw, s).unwrap().iter().sum();
        assert!((sum - 1.0).abs() < 1e-6, "{kh}x{kw} {s}: {sum}");
    }
}

#[test]
fn gaussian_refuses_bad_sigma_and_size() {
    for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let m = filters::gaussian(3, 3, s).unwrap_err().message;
        assert!(m.contains("finite number greater than 0"), "{m}");
    }
    assert!(
        filters::gaussian(0, 3, 1.0)
            .unwrap_err()
            .message
            .contains("at least 1x1")
    );
    // A tiny sigma on an odd size is a delta; on an even size every weight underflows.
    assert_eq!(filters::gaussian(3, 1, 1e-3).unwrap(), [0.0, 1.0, 0.0]);
    assert!(
        filters::gaussian(2, 2, 1e-3)
            .unwrap_err()
            .message
            .contains("too small")
    );
}

#[test]
fn fixed_filters() {
    assert_eq!(filters::box_filter(3, 3), [1.0 / 9.0; 9]);
    assert_eq!(filters::box_filter(1, 4), [0.25; 4]);
    assert_eq!(filters::sobel_x(), [-1., 0., 1., -2., 0., 2., -1., 0., 1.]);
    assert_eq!(filters::sobel_y(), [-1., -2., -1., 0., 0., 0., 1., 2., 1.]);
    assert_eq!(filters::laplacian(), [0., 1., 0., 1., -4., 1., 0., 1., 0.]);
}
