//! `explain --plot DIR`: pictures of the analysis, each as SVG and PNG (plotters; text in
//! DejaVu Sans, embedded, so the output does not depend on the fonts of the machine):
//!
//! - `LAYER.spectra.svg|png`: the singular values of each form's matrices (one panel per form,
//!   one line per matrix, normalised by the largest), on a log scale;
//! - `LAYER.tradeoff.svg|png`: each form's relative error against its MACs, one point per rank
//!   (of the weights: line; on data: circles), the standard form at error 0 (drawn at the
//!   bottom), and the point the budget chose;
//! - `network.svg|png` (with `--budget`): the greedy path, network MACs against predicted
//!   error, the networks measured on the way, the budget and the chosen network.
//!
//! The layers are those of the graph after `fold-batchnorm` (the graph the budget rewrites): a
//! conv folded with its batchnorm is named after the batchnorm.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use convc_ir::{Graph, Op};
use convc_passes::budget::{self, BudgetPlan, LayerOptions};
use convc_passes::factor::{Factorization, Form};

use crate::budget::Activations;
use crate::driver::{Failure, Model, input_err};

/// The smallest value drawn on a log axis (exact forms have error 0).
const FLOOR: f64 = 1e-8;

const FORM_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// The bottom of a log axis for `values`: a power of ten below the smallest positive one
/// (at least [`FLOOR`]); zeros are drawn there.
fn y_floor(values: impl Iterator<Item = f64>) -> f64 {
    let min = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold(f64::INFINITY, f64::min);
    if min.is_finite() {
        10f64.powf((min / 2.0).log10().floor()).max(FLOOR)
    } else {
        FLOOR
    }
}

fn colour(form: Form) -> RGBColor {
    match form {
        Form::Asymmetric => FORM_COLOURS[0],
        Form::AsymmetricPerOutput => FORM_COLOURS[1],
        Form::DepthwiseSeparable => FORM_COLOURS[2],
    }
}

/// Registers the embedded font once (plotters draws text with registered fonts only).
fn fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// A file name for a layer: its name with anything but letters, digits, `_`, `-` and `.`
/// replaced by `_`.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn plot_err<E: std::fmt::Display>(e: E) -> Failure {
    input_err(format!("cannot draw a plot: {e}"))
}

/// Draws with `draw` into an SVG and a PNG `stem.svg`, `stem.png` in `dir`.
fn write_pair(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    draw: &dyn Fn(&DrawingArea<SVGBackend, Shift>) -> Result<(), Failure>,
    draw_png: &dyn Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<(), Failure>,
) -> Result<usize, Failure> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    let mut rgb = vec![255u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw_png(&root)?;
        root.present().map_err(plot_err)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, size.0, size.1);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(plot_err)?;
        w.write_image_data(&rgb).map_err(plot_err)?;
    }
    for (ext, bytes) in [("svg", svg.into_bytes()), ("png", png_bytes)] {
        let path = dir.join(format!("{stem}.{ext}"));
        convc_tensor::write::write_atomic(&path, &bytes).map_err(|e| {
            input_err(format!(
                "cannot write `{}`: {}",
                path.display(),
                convc_ir::lower::io_reason(&e)
            ))
        })?;
    }
    Ok(2)
}

/// Panels of singular values, one per form.
fn draw_spectra<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    layer: &str,
    facts: &[Factorization],
) -> Result<(), Failure> {
    let root = root
        .titled(
            &format!("`{layer}`: singular values of each form's matrices (/ largest)"),
            ("sans-serif", 18),
        )
        .map_err(plot_err)?;
    let panels = root.split_evenly((1, facts.len().max(1)));
    for (panel, f) in panels.iter().zip(facts) {
        let values = f.singular_values();
        let k = values.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let top = f.largest_singular_value().max(f64::MIN_POSITIVE);
        let (count, rows, cols) = f.geom.matrices(f.form);
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{}: {count} x ({rows}x{cols})", f.form),
                ("sans-serif", 14),
            )
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.5f64..k as f64 + 0.5, (FLOOR..1.5f64).log_scale())
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("index")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .x_labels(k.min(8))
            .draw()
            .map_err(plot_err)?;
        let step = values.len().div_ceil(32).max(1);
        for s in values.iter().step_by(step) {
            let pts = s
                .iter()
                .enumerate()
                .map(|(m, v)| ((m + 1) as f64, (v / top).max(FLOOR)));
            chart
                .draw_series(LineSeries::new(pts.clone(), colour(f.form).mix(0.6)))
                .map_err(plot_err)?;
            chart
                .draw_series(pts.map(|p| Circle::new(p, 2, colour(f.form).filled())))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// Error against MACs, one curve per form, and the chosen point.
fn draw_tradeoff<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    opts: &LayerOptions,
    chosen: Option<(usize, f64)>,
) -> Result<(), Failure> {
    let cands = &opts.candidates;
    let max_macs = cands.iter().map(|c| c.macs).max().unwrap_or(1).max(1) as f64;
    let scale = 1e6;
    let floor = y_floor(
        cands
            .iter()
            .flat_map(|c| [c.weight_error, c.data_error.unwrap_or(0.0)]),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("`{}`: relative error against MACs", opts.layer),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max_macs / scale * 1.05, (floor..2f64).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("MACs (millions)")
        .y_desc("relative error")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(plot_err)?;
    let at = |c: &budget::Candidate, e: f64| (c.macs as f64 / scale, e.max(floor));
    for form in Form::ALL {
        let pts: Vec<&budget::Candidate> = cands.iter().filter(|c| c.form == Some(form)).collect();
        if pts.is_empty() {
            continue;
        }
        let col = colour(form);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|c| at(c, c.weight_error)),
                col.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(format!("{form} (weights)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
        let data: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|c| c.data_error.map(|e| at(c, e)))
            .collect();
        if !data.is_empty() {
            chart
                .draw_series(
                    data.into_iter()
                        .map(|p| Circle::new(p, 4, col.stroke_width(1))),
                )
                .map_err(plot_err)?
                .label(format!("{form} (on data)"))
                .legend(move |(x, y)| Circle::new((x + 8, y), 4, col.stroke_width(1)));
        }
    }
    let std = at(&cands[0], 0.0);
    chart
        .draw_series(std::iter::once(TriangleMarker::new(std, 7, BLACK.filled())))
        .map_err(plot_err)?
        .label("standard (exact)")
        .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, BLACK.filled()));
    if let Some((j, e)) = chosen {
        let p = at(&cands[j], cands[j].error());
        chart
            .draw_series([Cross::new(p, 9, RED.stroke_width(3))])
            .map_err(plot_err)?
            .label(format!("chosen for budget {e}: {}", cands[j].label()))
            .legend(|(x, y)| Cross::new((x + 8, y), 5, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// The greedy path of the budget: network MACs against error.
fn draw_network<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    p: &BudgetPlan,
) -> Result<(), Failure> {
    let scale = 1e6;
    let floor = y_floor(
        p.path
            .iter()
            .map(|s| s.predicted)
            .chain(p.probes.iter().map(|q| q.measured))
            .chain([p.budget]),
    );
    let top = p.macs_before.max(1) as f64 / scale * 1.05;
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "network: error against MACs along the greedy path (budget {})",
                p.budget
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..top, (floor..2f64).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("network MACs (millions)")
        .y_desc("relative output error")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()
        .map_err(plot_err)?;
    let mut path = vec![(p.macs_before as f64 / scale, floor)];
    path.extend(
        p.path
            .iter()
            .map(|s| (s.macs as f64 / scale, s.predicted.max(floor))),
    );
    let blue = FORM_COLOURS[0];
    chart
        .draw_series(LineSeries::new(path, blue.stroke_width(2)))
        .map_err(plot_err)?
        .label("predicted (greedy path)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], blue.stroke_width(2)));
    chart
        .draw_series(p.probes.iter().map(|q| {
            Circle::new(
                (q.macs as f64 / scale, q.measured.max(floor)),
                5,
                BLACK.filled(),
            )
        }))
        .map_err(plot_err)?
        .label("measured")
        .legend(|(x, y)| Circle::new((x + 8, y), 4, BLACK.filled()));
    let b = p.budget.max(floor);
    chart
        .draw_series(LineSeries::new([(0.0, b), (top, b)], RED.stroke_width(1)))
        .map_err(plot_err)?
        .label("budget")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(1)));
    chart
        .draw_series([Cross::new(
            (p.macs_after as f64 / scale, p.measured_error.max(floor)),
            9,
            RED.stroke_width(3),
        )])
        .map_err(plot_err)?
        .label("chosen")
        .legend(|(x, y)| Cross::new((x + 8, y), 5, RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// The layers to draw: the budget's, or the options of every conv of the folded graph.
fn layer_set(model: &Model, acts: Option<&mut Activations>) -> Result<Vec<LayerOptions>, Failure> {
    let mut g: Graph = model.graph.clone();
    let pm = convc_passes::PassManager::from_names(&["fold-batchnorm"]).map_err(input_err)?;
    pm.run(&mut g, &convc_passes::PassContext::default())
        .map_err(input_err)?;
    let mut acts = acts;
    let mut out = Vec::new();
    for n in g.topo_order() {
        if matches!(g.node(n).op, Op::Conv(_)) {
            let stats = acts.as_deref_mut().and_then(|a| a.stats(&g, n));
            out.extend(budget::layer_options(&g, n, stats.as_ref()));
        }
    }
    Ok(out)
}

/// Writes every plot into `dir`; returns the number of files written.
pub fn write_all(
    dir: &Path,
    model: &Model,
    plan: Option<&BudgetPlan>,
    acts: Option<&mut Activations>,
) -> Result<usize, Failure> {
    fonts();
    let owned;
    let layers: &[LayerOptions] = match plan {
        Some(p) => &p.layers,
        None => {
            owned = layer_set(model, acts)?;
            &owned
        }
    };
    let mut written = 0;
    for (l, opts) in layers.iter().enumerate() {
        let stem = file_stem(&opts.layer);
        written += write_pair(
            dir,
            &format!("{stem}.spectra"),
            (1200, 400),
            &|r| draw_spectra(r, &opts.layer, &opts.facts),
            &|r| draw_spectra(r, &opts.layer, &opts.facts),
        )?;
        let chosen = plan.map(|p| (p.choice[l], p.budget));
        written += write_pair(
            dir,
            &format!("{stem}.tradeoff"),
            (900, 560),
            &|r| draw_tradeoff(r, opts, chosen),
            &|r| draw_tradeoff(r, opts, chosen),
        )?;
    }
    if let Some(p) = plan {
        written += write_pair(dir, "network", (900, 560), &|r| draw_network(r, p), &|r| {
            draw_network(r, p)
        })?;
    }
    Ok(written)
}
