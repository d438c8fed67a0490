//! The JIT's plan as text (`convc dump --format plan`): where every value lives, and per step
//! its kernel and schedule (items, register block, rows, chunks, tiles, the vector path),
//! how its input is laid out (padded copy, per-band tile, band buffer, written in place by
//! its producer), and whether it runs on several threads. The schedule is data: a change of
//! heuristic shows as a diff of these texts (`tests/plan_snapshots.rs` at the repo root).

use std::fmt::Write;

use convc_ir::Graph;

use crate::plan::{Arg, Loc, PadCopy, Plan, Step};
use crate::spec::{ConvSpec, KernelSpec};

/// Renders `plan` for graph `g`; `kernel_names[k]` names kernel `k`; `parallel_min_ns` is the
/// work above which a step is split across threads.
pub(crate) fn render(
    g: &Graph,
    plan: &Plan,
    kernel_names: &[String],
    parallel_min_ns: f64,
) -> String {
    let name = |node: usize| -> String {
        let n = petgraph::graph::NodeIndex::new(node);
        if g.g.contains_node(n) {
            g.node(n).name.clone()
        } else {
            format!("#{node}")
        }
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "plan: {} steps, arena {} floats, thread scratch {} floats",
        plan.steps.len(),
        plan.arena_len,
        plan.thread_scratch
    );
    let _ = writeln!(t, "values:");
    for (node, loc) in plan.loc.iter().enumerate() {
        let Some(loc) = loc else { continue };
        let at = match loc {
            Loc::Input(i) => format!("input {i}"),
            Loc::Output(i) => format!("output {i}"),
            Loc::Arena(off) => format!("arena @{off}"),
        };
        let _ = writeln!(t, "  {:<24} {at}", name(node));
    }
    for (i, s) in plan.steps.iter().enumerate() {
        step(&mut t, i, s, plan, kernel_names, parallel_min_ns, &name);
    }
    t
}

fn step(
    t: &mut String,
    i: usize,
    s: &Step,
    plan: &Plan,
    kernel_names: &[String],
    parallel_min_ns: f64,
    name: &dyn Fn(usize) -> String,
) {
    let kname = |k: usize| kernel_names.get(k).cloned().unwrap_or_default();
    let _ = writeln!(t, "step {i} {}: writes {}", s.name, name(s.writes));
    let threads = if s.work_ns >= parallel_min_ns && s.items() >= 2 {
        "split across threads"
    } else {
        "one thread"
    };
    let _ = writeln!(
        t,
        "  {} items, {threads} (about {:.0} us of work), {} MACs",
        s.items(),
        s.work_ns / 1e3,
        s.macs
    );
    if let Some(b) = &s.band {
        let _ = writeln!(
            t,
            "  band pair: bands of {} rows of {} (buffer [{}][{}][{}] in the thread's scratch @{})",
            b.rows, b.oh, b.chans, b.rows, b.width, b.buf_off
        );
        if let Some(p) = &b.pre {
            let _ = writeln!(
                t,
                "  producer inside: kernel {}, tile {} ({} rows{})",
                kname(p.step.kernel),
                layout(&p.pad),
                p.tile_rows,
                if p.ring { ", a ring" } else { "" }
            );
            schedule(t, &p.step.spec, "    ");
        }
        let _ = writeln!(t, "  first: kernel {}", kname(b.step.kernel));
        schedule(t, &b.step.spec, "    ");
    }
    let _ = writeln!(t, "  kernel {}", kname(s.kernel));
    schedule(t, &s.spec, "    ");
    if let Some(p) = &s.pad {
        let at = match s.pad_private {
            Some(off) => format!("by each thread into its scratch @{off}"),
            None => format!("at arena @{}", plan.scratch.get(i).copied().unwrap_or(0)),
        };
        let _ = writeln!(t, "  input {} padded: {} {at}", name(p.src), layout(p));
    }
    if let KernelSpec::Wino(w) = &s.spec
        && let (Some(b), Some(Arg::Value { node, .. })) = (&w.band_pad, s.args.get(1))
    {
        let _ = writeln!(
            t,
            "  input {} ({}x{}) padded by the input transform, per band and channel ({} rows of {} floats, pad top {}, left {}, {} phases) into the thread's scratch",
            name(*node),
            b.h,
            b.w,
            w.rows * w.variant.m() + 2,
            w.in_rs,
            b.pt,
            b.pl,
            w.variant.m()
        );
    }
    if let Some(tile) = &s.tile {
        let _ = writeln!(
            t,
            "  input {} padded per band of {}{} row groups into the thread's scratch: {}",
            name(tile.pad.src),
            if tile.band_major() { "up to " } else { "" },
            tile.band,
            layout(&tile.pad)
        );
        // The kernel's line above gives its own (block-major) numbering; the runtime runs
        // those items in another order (see `Tile::band_major`).
        if tile.band_major() {
            let _ = writeln!(
                t,
                "  run band-major: each band padded once, then every block's rows of it (bands shorter where a thread would get under {} of them)",
                crate::plan::TILE_BANDS_PER_THREAD
            );
        }
    }
    if let Some(z) = &s.zero {
        let _ = writeln!(t, "  writes its consumer's padded layout: {}", layout(z));
    }
    let args: Vec<String> = s
        .args
        .iter()
        .map(|a| match *a {
            Arg::Null => "-".to_string(),
            Arg::Value { node, off } if off == 0 => name(node),
            Arg::Value { node, off } => format!("{}+{off}", name(node)),
            Arg::Scratch => "padded".to_string(),
            Arg::ThreadScratch => "thread scratch".to_string(),
            Arg::ThreadScratchAt(off) => format!("thread scratch @{off}"),
            Arg::Param(p) => format!("param {p}"),
            Arg::Output(o) => format!("output {o}"),
        })
        .collect();
    let _ = writeln!(t, "  buffers: [{}]", args.join(", "));
}

/// The schedule of one kernel spec.
fn schedule(t: &mut String, spec: &KernelSpec, indent: &str) {
    match spec {
        KernelSpec::Conv(c) => conv(t, c, indent),
        KernelSpec::Sep(s) => {
            let _ = writeln!(t, "{indent}vertical half:");
            conv(t, &s.a, &format!("{indent}  "));
            let _ = writeln!(t, "{indent}horizontal half (through a row buffer):");
            conv(t, &s.b, &format!("{indent}  "));
        }
        KernelSpec::Elt(e) => {
            let _ = writeln!(t, "{indent}elementwise: {} channels of {}", e.c, e.hw);
        }
        KernelSpec::Pool(p) => {
            let _ = writeln!(
                t,
                "{indent}{} pool {}x{} stride {}x{}: items (channel, output row)",
                if p.max { "max" } else { "average" },
                p.kh,
                p.kw,
                p.sh,
                p.sw
            );
        }
        KernelSpec::Gap { c, hw } => {
            let _ = writeln!(t, "{indent}global average: {c} channels of {hw}");
        }
        KernelSpec::Softmax { c, hw } => {
            let _ = writeln!(
                t,
                "{indent}softmax over {c} channels: items pixels of {hw} (plain Rust)"
            );
        }
        KernelSpec::Lrn(l) => {
            let _ = writeln!(
                t,
                "{indent}local response normalisation, size {}, over {} channels: items pixels of {} (plain Rust)",
                l.size, l.c, l.hw
            );
        }
        KernelSpec::Wino(w) => {
            let _ = writeln!(
                t,
                "{indent}Winograd {} on the {} path: {} x {} tiles ({} a row with the vector padding of the transforms, {}-float vectors), items (band of {} tile rows, group of {} channels): {} x {}; GEMMs {} channels x {} tiles x {} taps, blocks of {}{}",
                w.variant.name(),
                w.isa,
                w.tiles_y,
                w.tiles_x,
                w.txp,
                w.tl,
                w.rows,
                w.group,
                w.tiles_y.div_ceil(w.rows),
                w.groups(),
                w.oc,
                w.cols(),
                w.c,
                w.ocb,
                if w.stream {
                    "; output written with streaming stores (larger than the L2)"
                } else {
                    ""
                }
            );
        }
        KernelSpec::Gemm(g) => {
            let stride = if g.sh * g.sw > 1 {
                format!(", stride {}x{}", g.sh, g.sw)
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "{indent}{}x{} conv as a GEMM on the {} path: {} positions flat{stride}, items (band of {} positions, group of {} channels): {} x {}; each band's {} taps ({} channels x {}x{}) packed into the thread's scratch once, then blocks of {} channels, {} taps a chunk",
                g.kh,
                g.kw,
                g.isa,
                g.positions(),
                g.cols,
                g.group,
                g.bands(),
                g.groups(),
                g.taps(),
                g.c,
                g.kh,
                g.kw,
                g.ocb,
                g.chunk
            );
        }
        KernelSpec::Rust(r) => {
            let _ = writeln!(
                t,
                "{indent}{} (constants {:?}): {} items (plain Rust)",
                r.kind.name(),
                r.params,
                r.items
            );
        }
        KernelSpec::Shuffle { c, hw, groups } => {
            let _ = writeln!(
                t,
                "{indent}channel shuffle, {groups} groups of {c} channels of {hw}: items output channels (plain Rust)"
            );
        }
    }
}

fn conv(t: &mut String, c: &ConvSpec, indent: &str) {
    let path = match c.wide {
        Some(isa) if c.dw_plane.is_some() => format!(
            "{isa} whole-plane depthwise kernel, {} vector(s) a row, the input unpadded",
            c.ow.div_ceil(isa.lanes())
        ),
        Some(isa) => format!(
            "{isa} microkernel, {} x {} vectors",
            c.ocb,
            crate::wide::tile_vectors(isa, c.ocb)
        ),
        None => format!("f32x4 (Cranelift), {} channels a block", c.ocb),
    };
    let order = if c.row_major {
        "row-major"
    } else {
        "block-major"
    };
    let _ = writeln!(
        t,
        "{indent}{path}; {order} items (groups {}, blocks {}, row groups {}{})",
        c.groups,
        c.nb(),
        c.row_groups(),
        if c.xtiles > 1 {
            format!(", column tiles {} of {}", c.xtiles, c.xtile_cols)
        } else {
            String::new()
        }
    );
    let mut extra = Vec::new();
    if c.dw_plane.is_some() {
        extra.push("a channel's plane an item".to_string());
    } else if c.rows > 1 {
        extra.push(format!("{} rows an item", c.rows));
    }
    if c.flat_pad > 0 {
        extra.push(format!(
            "flat rows of the padded input ({} a row)",
            c.flat_pad
        ));
    }
    if c.chunks() > 1 {
        extra.push(format!("{} chunks of {} taps", c.chunks(), c.chunk_taps));
    }
    if c.out_cs != c.oh * c.ow || c.out_rs != c.ow {
        extra.push(format!("output strides {} / {}", c.out_cs, c.out_rs));
    }
    let _ = writeln!(
        t,
        "{indent}taps {} ({}x{}x{}), input strides {} / {}{}",
        c.taps(),
        c.cg,
        c.kh,
        c.kw,
        c.chan_stride,
        c.row_stride,
        if extra.is_empty() {
            String::new()
        } else {
            format!("; {}", extra.join(", "))
        }
    );
}

/// A padded layout.
fn layout(p: &PadCopy) -> String {
    format!(
        "{} [{}][{}][{}] (pad top {}, left {}, {} phase{}{})",
        if p.hcw {
            "rows outermost"
        } else {
            "channels outermost"
        },
        if p.hcw { p.hp } else { p.c },
        if p.hcw { p.c } else { p.hp },
        p.row_len(),
        p.pt,
        p.pl,
        p.sw,
        if p.sw == 1 { "" } else { "s" },
        if p.tail > 0 {
            format!(
                ", rows sharing their padding columns, {} floats of tail",
                p.tail
            )
        } else {
            String::new()
        }
    )
}
