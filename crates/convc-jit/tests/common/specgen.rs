//! A generator of random `.conv` specs covering every op and attribute (the ops added for ONNX
//! import too).

/// A source of choices: a seeded [`Rng`], or a fuzzer's bytes (the `jit_diff` fuzz target).
pub trait Choose {
    /// Uniform in `lo..=hi`.
    fn r(&mut self, lo: usize, hi: usize) -> usize;
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool;
}

impl Choose for Rng {
    fn r(&mut self, lo: usize, hi: usize) -> usize {
        Rng::r(self, lo, hi)
    }
    fn chance(&mut self, p: f64) -> bool {
        Rng::chance(self, p)
    }
}

/// SplitMix64 for reproducible choices.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    pub fn r(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
}

#[derive(Clone)]
struct T {
    name: String,
    c: usize,
    h: usize,
    w: usize,
}

/// Output size on one axis for explicit padding, or None when <= 0.
fn out_len(n: usize, b: usize, a: usize, k: usize, s: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    let tot = n + b + a;
    if tot < span {
        None
    } else {
        Some((tot - span) / s + 1)
    }
}

fn size(a: usize, b: usize) -> String {
    if a == b && a > 0 {
        format!("{a}")
    } else {
        format!("{a}x{b}")
    }
}

/// Random padding for a window `k` (per axis): the text and the explicit pads (None for same).
fn pad(rng: &mut impl Choose, k: [usize; 2], pool: bool) -> (String, Option<[usize; 4]>) {
    let lim = |kk: usize| if pool { kk - 1 } else { 3 };
    match rng.r(0, 4) {
        0 => ("same".into(), None),
        1 => ("valid".into(), Some([0; 4])),
        2 => {
            let p = rng.r(0, lim(k[0]).min(lim(k[1])));
            (format!("{p}"), Some([p, p, p, p]))
        }
        3 => {
            let (ph, pw) = (rng.r(0, lim(k[0])), rng.r(0, lim(k[1])));
            (format!("({ph}, {pw})"), Some([ph, ph, pw, pw]))
        }
        _ => {
            let p = [
                rng.r(0, lim(k[0])),
                rng.r(0, lim(k[0])),
                rng.r(0, lim(k[1])),
                rng.r(0, lim(k[1])),
            ];
            (format!("({}, {}, {}, {})", p[0], p[1], p[2], p[3]), Some(p))
        }
    }
}

fn window_out(
    t: &T,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    p: Option<[usize; 4]>,
) -> Option<(usize, usize)> {
    match p {
        None => Some((t.h.div_ceil(s[0]), t.w.div_ceil(s[1]))),
        Some([pt, pb, pl, pr]) => Some((
            out_len(t.h, pt, pb, k[0], s[0], d[0])?,
            out_len(t.w, pl, pr, k[1], s[1], d[1])?,
        )),
    }
}

/// A random spec: its text and the input size. `big`: larger channel counts.
pub fn spec(seed: u64, big: bool) -> String {
    spec_from(&mut Rng(seed), big)
}

/// A random spec from any source of choices (see [`spec`]).
pub fn spec_from(rng: &mut impl Choose, big: bool) -> String {
    let c0 = rng.r(1, if big { 16 } else { 5 });
    let (h, w) = (rng.r(1, 19), rng.r(1, 23));
    let mut ts = vec![T {
        name: "x".into(),
        c: c0,
        h,
        w,
    }];
    let mut lines = vec![format!("input x: [{c0}, {h}, {w}]")];
    let layers = rng.r(1, 7);
    let mut k = 0;
    while k < layers {
        let src = if rng.chance(0.7) {
            ts.len() - 1
        } else {
            rng.r(0, ts.len() - 1)
        };
        let x = ts[src].clone();
        let name = format!("l{}", ts.len());
        let seedw = rng.r(1, 1000);
        let op = rng.r(0, 16);
        let made: Option<(String, T)> = match op {
            0..=3 => {
                // conv, with every attribute
                let kk = [rng.r(1, 5), rng.r(1, 5)];
                let s = if rng.chance(0.5) {
                    [1, 1]
                } else {
                    [rng.r(1, 3), rng.r(1, 3)]
                };
                let d = if rng.chance(0.6) {
                    [1, 1]
                } else {
                    [rng.r(1, 3), rng.r(1, 3)]
                };
                let (ptxt, p) = pad(rng, kk, false);
                let divs: Vec<usize> = (1..=x.c).filter(|g| x.c % g == 0).collect();
                let groups = if rng.chance(0.6) {
                    1
                } else {
                    divs[rng.r(0, divs.len() - 1)]
                };
                let out = groups * rng.r(1, if groups == 1 { 14 } else { 4 });
                let bias = if rng.chance(0.5) {
                    format!(", bias=random(seed={})", seedw + 1)
                } else {
                    String::new()
                };
                window_out(&x, kk, s, d, p).map(|(oh, ow)| {
                    (
                        format!(
                            "{name} = conv({}, out={out}, kernel={}, stride={}, dilation={}, pad={ptxt}, groups={groups}, weights=random(seed={seedw}){bias})",
                            x.name,
                            size(kk[0], kk[1]),
                            size(s[0], s[1]),
                            size(d[0], d[1])
                        ),
                        T { name: name.clone(), c: out, h: oh, w: ow },
                    )
                })
            }
            4 | 5 => {
                let kk = [rng.r(1, 5), rng.r(1, 5)];
                let s = if rng.chance(0.6) {
                    [1, 1]
                } else {
                    [rng.r(1, 3), rng.r(1, 3)]
                };
                let d = if rng.chance(0.7) {
                    [1, 1]
                } else {
                    [rng.r(1, 2), rng.r(1, 2)]
                };
                let m = if rng.chance(0.6) { 1 } else { rng.r(2, 3) };
                let (ptxt, p) = pad(rng, kk, false);
                let bias = if rng.chance(0.5) {
                    format!(", bias=random(seed={})", seedw + 1)
                } else {
                    String::new()
                };
                window_out(&x, kk, s, d, p).map(|(oh, ow)| {
                    (
                        format!(
                            "{name} = depthwise({}, kernel={}, multiplier={m}, stride={}, dilation={}, pad={ptxt}, weights=random(seed={seedw}){bias})",
                            x.name,
                            size(kk[0], kk[1]),
                            size(s[0], s[1]),
                            size(d[0], d[1])
                        ),
                        T { name: name.clone(), c: x.c * m, h: oh, w: ow },
                    )
                })
            }
            6 => {
                let out = rng.r(1, 13);
                let bias = if rng.chance(0.5) {
                    format!(", bias=random(seed={})", seedw + 1)
                } else {
                    String::new()
                };
                Some((
                    format!(
                        "{name} = pointwise({}, out={out}, weights=random(seed={seedw}){bias})",
                        x.name
                    ),
                    T {
                        name: name.clone(),
                        c: out,
                        ..x.clone()
                    },
                ))
            }
            7 | 8 => Some((
                format!(
                    "{name} = batchnorm({}, mean=random(seed={seedw}), var=random(seed={}), gamma=random(seed={}), beta=random(seed={}))",
                    x.name,
                    seedw + 1,
                    seedw + 2,
                    seedw + 3
                ),
                T {
                    name: name.clone(),
                    ..x.clone()
                },
            )),
            9 | 10 => {
                let f = match rng.r(0, 6) {
                    0 | 1 => "relu".to_string(),
                    2 => "relu6".to_string(),
                    3 => "sigmoid".to_string(),
                    4 => "tanh".to_string(),
                    5 => "leaky_relu".to_string() + "(" + &x.name + ", alpha=0.1)",
                    _ => format!("clamp({}, min=-0.5, max=0.7)", x.name),
                };
                let text = if f.contains('(') {
                    format!("{name} = {f}")
                } else {
                    format!("{name} = {f}({})", x.name)
                };
                Some((
                    text,
                    T {
                        name: name.clone(),
                        ..x.clone()
                    },
                ))
            }
            11 | 12 => {
                let same: Vec<&T> = ts
                    .iter()
                    .filter(|t| t.c == x.c && t.h == x.h && t.w == x.w)
                    .collect();
                let other = same[rng.r(0, same.len() - 1)];
                let (a, b) = if rng.chance(0.5) {
                    (&x.name, &other.name)
                } else {
                    (&other.name, &x.name)
                };
                Some((
                    format!("{name} = add({a}, {b})"),
                    T {
                        name: name.clone(),
                        ..x.clone()
                    },
                ))
            }
            13 => {
                let same: Vec<&T> = ts.iter().filter(|t| t.h == x.h && t.w == x.w).collect();
                let n = rng.r(1, 2);
                let mut names = vec![x.name.clone()];
                let mut c = x.c;
                for _ in 0..n {
                    let o = same[rng.r(0, same.len() - 1)];
                    names.push(o.name.clone());
                    c += o.c;
                }
                if rng.chance(0.5) {
                    names.reverse();
                }
                Some((
                    format!("{name} = concat({})", names.join(", ")),
                    T {
                        name: name.clone(),
                        c,
                        ..x.clone()
                    },
                ))
            }
            14 => {
                let kind = if rng.chance(0.5) {
                    "maxpool"
                } else {
                    "avgpool"
                };
                let kk = [rng.r(1, 3), rng.r(1, 3)];
                let (stxt, s) = if rng.chance(0.4) {
                    (String::new(), kk)
                } else {
                    let s = [rng.r(1, 3), rng.r(1, 3)];
                    (format!(", stride={}", size(s[0], s[1])), s)
                };
                let (ptxt, p) = pad(rng, kk, true);
                window_out(&x, kk, s, [1, 1], p).map(|(oh, ow)| {
                    (
                        format!(
                            "{name} = {kind}({}, kernel={}{stxt}, pad={ptxt})",
                            x.name,
                            size(kk[0], kk[1])
                        ),
                        T {
                            name: name.clone(),
                            c: x.c,
                            h: oh,
                            w: ow,
                        },
                    )
                })
            }
            16 => onnx_op(rng, &x, &ts, &name, seedw),
            _ => {
                if rng.chance(0.3) {
                    Some((
                        format!("{name} = global_avgpool({})", x.name),
                        T {
                            name: name.clone(),
                            c: x.c,
                            h: 1,
                            w: 1,
                        },
                    ))
                } else {
                    None
                }
            }
        };
        if let Some((line, t)) = made {
            lines.push(line);
            ts.push(t);
            k += 1;
        }
    }
    let mut outs = vec![ts[ts.len() - 1].name.clone()];
    if rng.chance(0.3) {
        outs.push(ts[rng.r(0, ts.len() - 1)].name.clone());
    }
    lines.push(format!("output {}", outs.join(", ")));
    lines.join("\n") + "\n"
}

/// One of the ops added for ONNX import on `x` (`ts`: the values so far), or `None` when the
/// drawn op does not fit: `hardsigmoid`, `hardswish`, `prelu`, `mul` and `add` (equal shapes
/// or a `[C, 1, 1]` operand broadcast), `global_maxpool`, `pad`, `upsample`,
/// `conv_transpose`, `slice`.
fn onnx_op(
    rng: &mut impl Choose,
    x: &T,
    ts: &[T],
    name: &str,
    seedw: usize,
) -> Option<(String, T)> {
    let same = |t: &T| T {
        name: name.to_string(),
        ..t.clone()
    };
    let xn = &x.name;
    match rng.r(0, 8) {
        0 => Some(if rng.chance(0.5) {
            (format!("{name} = hardswish({xn})"), same(x))
        } else {
            (
                format!("{name} = hardsigmoid({xn}, alpha=0.3, beta=0.4)"),
                same(x),
            )
        }),
        1 => Some(if rng.chance(0.5) {
            (
                format!("{name} = prelu({xn}, slope=random(seed={seedw}))"),
                same(x),
            )
        } else {
            (format!("{name} = prelu({xn}, slope=0.2)"), same(x))
        }),
        2 | 3 => {
            // mul or add with an operand of the same shape or a [C, 1, 1] one, either order.
            let fits: Vec<&T> = ts
                .iter()
                .filter(|t| t.c == x.c && ((t.h, t.w) == (x.h, x.w) || (t.h, t.w) == (1, 1)))
                .collect();
            let o = fits[rng.r(0, fits.len() - 1)];
            let big = if (x.h, x.w) == (1, 1) { o } else { x };
            let (a, b) = if rng.chance(0.5) {
                (xn, &o.name)
            } else {
                (&o.name, xn)
            };
            let op = if rng.chance(0.5) { "mul" } else { "add" };
            Some((format!("{name} = {op}({a}, {b})"), same(big)))
        }
        4 => Some((
            format!("{name} = global_maxpool({xn})"),
            T {
                name: name.to_string(),
                c: x.c,
                h: 1,
                w: 1,
            },
        )),
        5 => {
            let (mode, lim) = match rng.r(0, 2) {
                0 => ("constant", 2),
                1 => ("reflect", (x.h.min(x.w) - 1).min(2)),
                _ => ("edge", 2),
            };
            let p = [rng.r(0, lim), rng.r(0, lim), rng.r(0, lim), rng.r(0, lim)];
            Some((
                format!(
                    "{name} = pad({xn}, pads=({}, {}, {}, {}), mode={mode})",
                    p[0], p[1], p[2], p[3]
                ),
                T {
                    name: name.to_string(),
                    c: x.c,
                    h: x.h + p[0] + p[1],
                    w: x.w + p[2] + p[3],
                },
            ))
        }
        6 => {
            let sc = [rng.r(1, 2), rng.r(1, 2)];
            let mode = match rng.r(0, 3) {
                0 => "nearest",
                1 => "bilinear",
                2 => "bilinear, coords=align_corners",
                _ => "bilinear, coords=asymmetric",
            };
            Some((
                format!(
                    "{name} = upsample({xn}, scale={}, mode={mode})",
                    size(sc[0], sc[1])
                ),
                T {
                    name: name.to_string(),
                    c: x.c,
                    h: x.h * sc[0],
                    w: x.w * sc[1],
                },
            ))
        }
        7 => {
            let (k, s, p) = (
                [rng.r(1, 3), rng.r(1, 3)],
                [rng.r(1, 2), rng.r(1, 2)],
                rng.r(0, 1),
            );
            let groups = if x.c % 2 == 0 && rng.chance(0.3) {
                2
            } else {
                1
            };
            let out = groups * rng.r(1, 4);
            let o = |n: usize, a: usize| {
                ((n - 1) * s[a] + k[a])
                    .checked_sub(2 * p)
                    .filter(|&v| v > 0)
            };
            let (oh, ow) = (o(x.h, 0)?, o(x.w, 1)?);
            Some((
                format!(
                    "{name} = conv_transpose({xn}, out={out}, kernel={}, stride={}, pad={p}, groups={groups}, weights=random(seed={seedw}))",
                    size(k[0], k[1]),
                    size(s[0], s[1])
                ),
                T {
                    name: name.to_string(),
                    c: out,
                    h: oh,
                    w: ow,
                },
            ))
        }
        _ => {
            let start = rng.r(0, x.c - 1);
            let end = rng.r(start + 1, x.c);
            Some((
                format!("{name} = slice({xn}, start={start}, end={end})"),
                T {
                    name: name.to_string(),
                    c: end - start,
                    ..x.clone()
                },
            ))
        }
    }
}

/// An activation with its own constants, drawn from `i` and the choices (`clamp` bounds and
/// `leaky_relu` slopes differ from layer to layer: each is a distinct constant in a kernel).
fn activation(rng: &mut impl Choose, x: &str, i: usize) -> String {
    match rng.r(0, 5) {
        0 => format!("relu({x})"),
        1 => format!("tanh({x})"),
        2 => format!("sigmoid({x})"),
        3 => format!("relu6({x})"),
        4 => format!(
            "leaky_relu({x}, alpha=0.{:03})",
            1 + (i * 37 + rng.r(0, 99)) % 999
        ),
        _ => {
            let lo = -((1 + (i * 13 + rng.r(0, 97)) % 300) as f64) / 100.0;
            let hi = (1 + (i * 17 + rng.r(0, 89)) % 300) as f64 / 100.0;
            format!("clamp({x}, min={lo}, max={hi})")
        }
    }
}

/// A random spec stressing sizes the fixed capacities of a compiler depend on: a long
/// activation chain with distinct constants (after a conv, a depthwise conv or on its own), a
/// wide concat, a value with a big fan-out, or a deep graph of every op; or all four.
pub fn stress_spec(rng: &mut impl Choose) -> String {
    let c0 = rng.r(1, 6);
    let (h, w) = (rng.r(1, 12), rng.r(1, 14));
    let mut lines = vec![format!("input x: [{c0}, {h}, {w}]")];
    let mut n = 0usize;
    let name = |n: &mut usize| {
        *n += 1;
        format!("s{n}")
    };
    // `cur` has c0 channels and the input's size throughout.
    let mut cur = "x".to_string();
    let kind = rng.r(0, 4);
    if kind == 0 || kind == 4 {
        let head = name(&mut n);
        lines.push(match rng.r(0, 2) {
            0 => format!("{head} = conv({cur}, out={c0}, kernel=3, pad=same, weights=random(seed={}), bias=random(seed=9))", rng.r(1, 999)),
            1 => format!("{head} = depthwise({cur}, kernel=3, pad=1, weights=random(seed={}))", rng.r(1, 999)),
            _ => format!("{head} = batchnorm({cur}, mean=random(seed=1), var=random(seed=2), gamma=random(seed=3), beta=random(seed=4))"),
        });
        cur = head;
        for i in 0..rng.r(10, 60) {
            let v = name(&mut n);
            lines.push(format!("{v} = {}", activation(rng, &cur, i)));
            cur = v;
        }
    }
    if kind == 1 || kind == 4 {
        let k = rng.r(8, 64);
        let mut ops: Vec<String> = Vec::new();
        for i in 0..k {
            let v = name(&mut n);
            let src = if rng.chance(0.5) || ops.is_empty() {
                cur.clone()
            } else {
                ops[rng.r(0, ops.len() - 1)].clone()
            };
            lines.push(format!("{v} = {}", activation(rng, &src, i)));
            ops.push(v);
        }
        let cat = name(&mut n);
        lines.push(format!("{cat} = concat({})", ops.join(", ")));
        let back = name(&mut n);
        lines.push(format!(
            "{back} = pointwise({cat}, out={c0}, weights=random(seed={}))",
            rng.r(1, 999)
        ));
        cur = back;
    }
    if kind == 2 || kind == 4 {
        let fan = cur.clone();
        let mut acc = name(&mut n);
        lines.push(format!("{acc} = relu({fan})"));
        for i in 0..rng.r(8, 48) {
            let u = name(&mut n);
            lines.push(match rng.r(0, 2) {
                0 => format!(
                    "{u} = conv({fan}, out={c0}, kernel={}, pad=same, weights=random(seed={}))",
                    1 + 2 * rng.r(0, 1),
                    i + 1
                ),
                1 => format!("{u} = maxpool({fan}, kernel=3, stride=1, pad=1)"),
                _ => format!("{u} = {}", activation(rng, &fan, i)),
            });
            let s = name(&mut n);
            lines.push(format!("{s} = add({acc}, {u})"));
            acc = s;
        }
        cur = acc;
    }
    if kind == 3 || kind == 4 {
        let mut prev = vec![cur.clone()];
        for i in 0..rng.r(40, 160) {
            let v = name(&mut n);
            let p = prev[prev.len() - 1].clone();
            // Every 4th layer a sigmoid: its values stay near 0.5 and it contracts rounding
            // errors, where a long linear run can shrink the signal a thousandfold and grow
            // it back (f32 against f64 accumulation then differs by more than the tolerance:
            // the fuzzer's first find, 98 linear layers).
            let pick = if i % 4 == 3 { 5 } else { rng.r(0, 5) };
            lines.push(match pick {
                5 if i % 4 == 3 => format!("{v} = sigmoid({p})"),
                0 => format!("{v} = conv({p}, out={c0}, kernel={}, pad=same, weights=random(seed={}))", 1 + 2 * rng.r(0, 1), i + 1),
                1 => format!("{v} = depthwise({p}, kernel=3, pad=same, weights=random(seed={}))", i + 1),
                2 => format!("{v} = avgpool({p}, kernel=3, stride=1, pad=1)"),
                3 => format!("{v} = add({p}, {})", prev[rng.r(0, prev.len() - 1)]),
                4 => format!("{v} = batchnorm({p}, mean=random(seed={i}), var=random(seed={}), gamma=random(seed=1), beta=random(seed=2))", i + 1),
                _ => format!("{v} = {}", activation(rng, &p, i)),
            });
            prev.push(v);
        }
        cur = prev[prev.len() - 1].clone();
    }
    if n == 0 {
        let v = name(&mut n);
        lines.push(format!("{v} = relu({cur})"));
        cur = v;
    }
    lines.push(format!("output {cur}"));
    lines.join("\n") + "\n"
}
