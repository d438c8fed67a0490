//! The analysis behind `convc explain`: for each conv with a kernel larger than 1x1, its
//! standard form and its decomposed forms side by side — the layers of each form with their
//! kernels and weight shapes, parameters, MACs, the rank each form needs to be exact for these
//! weights, and the relative error and MACs of the cheaper truncations.
//!
//! "Exact" means: the smallest rank whose relative error `||W - W_r||_F / ||W||_F` is at most
//! [`EXACT_TOLERANCE`] (1e-6, the default tolerance of `decompose`); every singular value it
//! drops is then below 1e-6 of `||W||_F` (so below 1e-6 of the largest singular value times
//! `sqrt(rank)`). MACs are totals when the sizes are known, and per output pixel otherwise (the
//! vertical layer of an asymmetric form counted `SW` times: it runs on every input column).

use std::fmt::{self, Write};

use convc_ir::{Conv, Graph, NodeIndex, Op, Pad, Param, Shape, Source, cost, shape};
use convc_tensor::Tensor;

use crate::decompose::{self, INTERMEDIATE_COST};
use crate::factor::{Form, Geom, LayerSpec, layers};
use crate::measure::PatchStats;
use crate::{EXACT_TOLERANCE, PassContext};

/// A MAC count: a total when sizes are known, per output pixel otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Macs {
    /// Total MACs for one image.
    Total(u64),
    /// MACs per output pixel (the sizes are symbolic).
    PerPixel(u64),
}

impl Macs {
    /// The number, whichever kind it is.
    pub fn value(&self) -> u64 {
        match *self {
            Macs::Total(v) | Macs::PerPixel(v) => v,
        }
    }
}

impl fmt::Display for Macs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Macs::Total(v) => f.write_str(&cost::human(v)),
            Macs::PerPixel(v) => write!(f, "{}/px", cost::human(v)),
        }
    }
}

/// One layer of a form.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerLine {
    /// What it is, with the rank symbolic: `conv 3x1 3->r`, `depthwise 3x3 3->3*m`.
    pub label: String,
    /// The weight shape with the rank symbolic: `[r,3,3,1]`.
    pub weight_shape: String,
    /// The weight shape at the exact rank.
    pub exact_shape: [usize; 4],
}

/// One truncation of a form.
#[derive(Clone, Debug, PartialEq)]
pub struct Truncation {
    /// The rank kept.
    pub rank: usize,
    /// Its relative error (from the singular values, in f64).
    pub rel_error: f64,
    /// Its relative error measured on the layer's input activations
    /// (`||Y - Y_r||_F / ||Y||_F`, see [`crate::measure`]), when data was given.
    pub data_error: Option<f64>,
    /// Parameters of the two layers (bias included).
    pub params: u64,
    /// MACs of the two layers.
    pub macs: Macs,
}

/// One decomposed form of a conv.
#[derive(Clone, Debug, PartialEq)]
pub struct FormExplanation {
    /// The form.
    pub form: Form,
    /// The matrices whose SVDs give it: how many, and their size.
    pub matrices: (usize, usize, usize),
    /// The largest rank the form can need.
    pub max_rank: usize,
    /// The rank at which it is exact for these weights.
    pub exact_rank: usize,
    /// The two layers.
    pub layers: Vec<LayerLine>,
    /// MACs per output pixel as a formula of the rank, e.g. `9r + 24r = 33r`.
    pub macs_formula: String,
    /// Parameters at the exact rank.
    pub params: u64,
    /// MACs at the exact rank.
    pub macs: Macs,
    /// Truncations cheaper (in MACs) than the standard conv, from rank 1 up to the exact rank
    /// (a sample of ranks when there are many).
    pub truncations: Vec<Truncation>,
}

/// Everything `explain` says about one conv.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvExplanation {
    /// The layer name.
    pub layer: String,
    /// `conv 3->8, kernel 3x3, stride 1, dilation 1, pad same, groups 1`.
    pub summary: String,
    /// Input shape.
    pub input: Shape,
    /// Output shape.
    pub output: Shape,
    /// Where the weights came from.
    pub weights: String,
    /// `||W||_F`.
    pub norm: f64,
    /// The conv as written.
    pub standard: LayerLine,
    /// Its parameters.
    pub params: u64,
    /// Its MACs.
    pub macs: Macs,
    /// The decomposed forms (none for a 1x1 conv).
    pub forms: Vec<FormExplanation>,
    /// What `decompose` does with this layer at the default tolerance.
    pub decision: String,
    /// Remarks on how to read the figures.
    pub notes: Vec<String>,
}

/// Why `explain` could not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExplainError {
    /// `--layer NAME` names no node.
    NoSuchLayer {
        /// The name asked for.
        name: String,
        /// The convs there are.
        convs: Vec<String>,
    },
    /// `--layer NAME` names a node that is not a conv.
    NotAConv {
        /// The name asked for.
        name: String,
        /// Its op.
        op: String,
    },
}

impl fmt::Display for ExplainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExplainError::NoSuchLayer { name, convs } if convs.is_empty() => {
                write!(
                    f,
                    "there is no layer `{name}` (and the model has no conv layers)"
                )
            }
            ExplainError::NoSuchLayer { name, convs } => {
                write!(
                    f,
                    "there is no layer `{name}`; the conv layers are {}",
                    convs.join(", ")
                )
            }
            ExplainError::NotAConv { name, op } => {
                write!(f, "layer `{name}` is a {op}, not a conv")
            }
        }
    }
}

impl std::error::Error for ExplainError {}

/// A count that may grow with the rank: `constant + coef * rank`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lin {
    constant: usize,
    coef: usize,
}

impl Lin {
    fn of(at1: usize, at2: usize) -> Lin {
        let coef = at2.saturating_sub(at1);
        Lin {
            constant: at1.saturating_sub(coef),
            coef,
        }
    }
    fn text(&self, letter: &str) -> String {
        match (self.constant, self.coef) {
            (c, 0) => c.to_string(),
            (0, 1) => letter.to_string(),
            (0, k) => format!("{k}*{letter}"),
            (c, 1) => format!("{c}+{letter}"),
            (c, k) => format!("{c}+{k}*{letter}"),
        }
    }
}

fn layer_label(
    kernel: [usize; 2],
    in_ch: &str,
    out: &str,
    groups: &str,
    depthwise: bool,
    stride: [usize; 2],
    dil: [usize; 2],
) -> String {
    let mut s = if kernel == [1, 1] {
        format!("pointwise {in_ch}->{out}")
    } else if depthwise {
        format!("depthwise {}x{} {in_ch}->{out}", kernel[0], kernel[1])
    } else {
        format!("conv {}x{} {in_ch}->{out}", kernel[0], kernel[1])
    };
    if !depthwise && groups != "1" {
        let _ = write!(s, " g={groups}");
    }
    if stride != [1, 1] {
        let _ = write!(s, " s={}x{}", stride[0], stride[1]);
    }
    if dil != [1, 1] {
        let _ = write!(s, " d={}x{}", dil[0], dil[1]);
    }
    s
}

fn shape_text(dims: &[String]) -> String {
    format!("[{}]", dims.join(","))
}

/// The symbolic layer lines of `form`, with shapes at rank `exact`.
fn form_lines(form: Form, conv: &Conv, in_ch: usize, exact: usize) -> Vec<LayerLine> {
    let (l1, l2, le) = (
        layers(form, 1, conv, in_ch),
        layers(form, 2, conv, in_ch),
        layers(form, exact.max(1), conv, in_ch),
    );
    let letter = form.rank_letter();
    (0..2)
        .map(|k| {
            let (a, b) = (&l1[k], &l2[k]);
            let lin = |x: usize, y: usize| Lin::of(x, y).text(letter);
            let (wa, wb) = (a.weight_shape(), b.weight_shape());
            let dims: Vec<String> = (0..4).map(|d| lin(wa[d], wb[d])).collect();
            let depthwise = a.groups == a.in_ch && a.in_ch > 1 && b.groups == b.in_ch;
            LayerLine {
                label: layer_label(
                    a.kernel,
                    &lin(a.in_ch, b.in_ch),
                    &lin(a.out, b.out),
                    &lin(a.groups, b.groups),
                    depthwise,
                    a.stride,
                    a.dilation,
                ),
                weight_shape: shape_text(&dims),
                exact_shape: le[k].weight_shape(),
            }
        })
        .collect()
}

/// Output pixels of each layer of a form, when the sizes are known.
pub(crate) fn layer_pixels(form: Form, conv: &Conv, input: &Shape) -> Option<[u64; 2]> {
    let specs = layers(form, 1, conv, input.c);
    let dummy = |s: &LayerSpec| {
        Op::Conv(Conv {
            out: s.out,
            kernel: s.kernel,
            stride: s.stride,
            dilation: s.dilation,
            pad: s.pad,
            groups: s.groups,
            weight: Param::new(Tensor::zeros(s.weight_shape().to_vec()), Source::Literal),
            bias: None,
        })
    };
    let s1 = shape::infer(&dummy(&specs[0]), &[input]).ok()?;
    let s2 = shape::infer(&dummy(&specs[1]), &[&s1]).ok()?;
    let px = |s: &Shape| s.hw().map(|(h, w)| h as u64 * w as u64);
    Some([px(&s1)?, px(&s2)?])
}

struct FormCosts {
    form: Form,
    pixels: Option<[u64; 2]>,
    /// Per-pixel multiplier of the first layer when sizes are unknown.
    ratio: u64,
    conv: Conv,
    in_ch: usize,
    bias: u64,
}

impl FormCosts {
    fn params(&self, r: usize) -> u64 {
        let s = layers(self.form, r, &self.conv, self.in_ch);
        s[0].weights() + s[1].weights() + self.bias
    }
    fn macs(&self, r: usize) -> Macs {
        let s = layers(self.form, r, &self.conv, self.in_ch);
        match self.pixels {
            Some([p1, p2]) => Macs::Total(s[0].weights() * p1 + s[1].weights() * p2),
            None => Macs::PerPixel(s[0].weights() * self.ratio + s[1].weights()),
        }
    }
    fn formula(&self) -> String {
        let letter = self.form.rank_letter();
        let (a, b) = (
            layers(self.form, 1, &self.conv, self.in_ch),
            layers(self.form, 2, &self.conv, self.in_ch),
        );
        let first = Lin::of(
            a[0].weights() as usize * self.ratio as usize,
            b[0].weights() as usize * self.ratio as usize,
        );
        let second = Lin::of(a[1].weights() as usize, b[1].weights() as usize);
        let total = Lin {
            constant: first.constant + second.constant,
            coef: first.coef + second.coef,
        };
        let t = |l: Lin| l.text(letter).replace('*', "");
        format!("{} + {} = {}", t(first), t(second), t(total))
    }
}

/// The ranks shown in a truncation table: 1..=8, then doubling, plus the last one.
fn sample_ranks(last: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=last.min(8)).collect();
    let mut r = 16;
    while r < last {
        v.push(r);
        r *= 2;
    }
    if last > 8 {
        v.push(last);
    }
    v
}

fn explain_one(
    g: &Graph,
    n: NodeIndex,
    conv: &Conv,
    stats: Option<&PatchStats>,
) -> ConvExplanation {
    let node = g.node(n);
    let x = g.operands(n).first().copied();
    let input = x.map_or_else(|| node.shape.clone(), |x| g.node(x).shape.clone());
    let in_ch = input.c;
    let c = cost::node_cost(g, n);
    let macs = c
        .macs()
        .map_or(Macs::PerPixel(c.macs_per_pixel), Macs::Total);
    let weights = conv.weight.data.data();
    let norm = weights
        .iter()
        .map(|&w| (w as f64) * (w as f64))
        .sum::<f64>()
        .sqrt();
    let pad = match conv.pad {
        Pad::Same => "same".to_string(),
        Pad::Explicit([t, b, l, r]) => format!("({t},{b},{l},{r})"),
    };
    let geom = Geom::of(conv, in_ch);
    let depthwise = geom.is_some_and(|g| g.is_depthwise());
    let kind = if depthwise { "depthwise" } else { "conv" };
    let summary = format!(
        "{kind} {in_ch}->{}, kernel {}x{}, stride {}x{}, dilation {}x{}, pad {pad}, groups {}",
        conv.out,
        conv.kernel[0],
        conv.kernel[1],
        conv.stride[0],
        conv.stride[1],
        conv.dilation[0],
        conv.dilation[1],
        conv.groups
    );
    let standard = LayerLine {
        label: layer_label(
            conv.kernel,
            &in_ch.to_string(),
            &conv.out.to_string(),
            &conv.groups.to_string(),
            depthwise,
            conv.stride,
            conv.dilation,
        ),
        weight_shape: convc_tensor::fmt_shape(conv.weight.data.shape()).replace(' ', ""),
        exact_shape: [
            conv.out,
            in_ch / conv.groups.max(1),
            conv.kernel[0],
            conv.kernel[1],
        ],
    };
    let mut ex = ConvExplanation {
        layer: node.name.clone(),
        summary,
        input: input.clone(),
        output: node.shape.clone(),
        weights: conv.weight.source.to_string(),
        norm,
        standard,
        params: c.params,
        macs,
        forms: Vec::new(),
        decision: String::new(),
        notes: Vec::new(),
    };
    let Some(geom) = geom else {
        ex.decision = "not analysed: the weights do not fit the layer".into();
        return ex;
    };
    let forms = geom.candidates();
    if forms.is_empty() {
        ex.decision = "a 1x1 conv has no smaller form: nothing to decompose".into();
        return ex;
    }
    if weights.iter().any(|w| !w.is_finite()) {
        ex.decision = "not analysed: the weights are not all finite".into();
        return ex;
    }
    let mut facts = Vec::new();
    let hashed = crate::cache::Hashed::new(weights);
    for form in forms {
        if geom.too_large(form) {
            let (count, rows, cols) = geom.matrices(form);
            ex.notes.push(format!(
                "the {form} form is not analysed: it is too large to factor ({count} matri{} of {rows}x{cols}, more than {} units of SVD work)",
                if count == 1 { "x" } else { "ces" },
                crate::factor::MAX_SVD_WORK
            ));
            continue;
        }
        let key = hashed.key(form, geom);
        let Some(fact) = crate::cache::factor(&key, form, geom, weights) else {
            continue;
        };
        let costs = FormCosts {
            form,
            pixels: layer_pixels(form, conv, &input),
            ratio: if form == Form::DepthwiseSeparable {
                1
            } else {
                conv.stride[1].max(1) as u64
            },
            conv: conv.clone(),
            in_ch,
            bias: conv.bias.as_ref().map_or(0, |b| b.data.numel() as u64),
        };
        let exact = fact.exact_rank();
        let energy = stats
            .map(|st| st.output_energy(&geom, weights, conv.bias.as_ref().map(|b| b.data.data())));
        let last_cheaper = (1..=exact)
            .take_while(|&r| costs.macs(r).value() < macs.value())
            .last();
        let truncations = match last_cheaper {
            Some(last) => sample_ranks(last)
                .into_iter()
                .map(|r| Truncation {
                    rank: r,
                    rel_error: fact.error(r),
                    data_error: stats
                        .zip(energy)
                        .and_then(|(st, e)| crate::budget::data_error(&fact, r, st, e, weights)),
                    params: costs.params(r),
                    macs: costs.macs(r),
                })
                .collect(),
            None => Vec::new(),
        };
        ex.forms.push(FormExplanation {
            form,
            matrices: geom.matrices(form),
            max_rank: fact.max_rank(),
            exact_rank: exact,
            layers: form_lines(form, conv, in_ch, exact),
            macs_formula: costs.formula(),
            params: costs.params(exact.max(1)),
            macs: costs.macs(exact.max(1)),
            truncations,
        });
        facts.push(fact);
    }
    if conv.stride[1] > 1 && ex.forms.iter().any(|f| f.form != Form::DepthwiseSeparable) {
        ex.notes.push(format!(
            "the vertical layer of an asymmetric form runs on every input column (the horizontal stride {} is the horizontal layer's), so per output pixel its MACs count {} times",
            conv.stride[1], conv.stride[1]
        ));
    }
    ex.decision = if norm == 0.0 {
        "kept: the weights are all zero (rank 0); the layer outputs its bias".into()
    } else {
        let ratio = decompose::vertical_ratio(g, n, conv);
        let tol = PassContext::default().effective_tolerance();
        match decompose::choose(&facts, conv, in_ch, ratio, tol) {
            Some(p) => format!(
                "rewritten into its {} form at {} = {} (cost {} vs {} MAC-equivalents per pixel)",
                p.form,
                p.form.rank_letter(),
                p.rank,
                round(p.cost),
                round(decompose::standard_cost(&geom))
            ),
            None => "kept: no form within the tolerance is cheaper by the cost model".into(),
        }
    };
    ex
}

fn round(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{}", x.round() as i64)
    } else {
        format!("{x:.1}")
    }
}

/// Explains every conv with a kernel larger than 1x1 (or just `layer`, whatever its kernel),
/// in topological order.
pub fn explain(g: &Graph, layer: Option<&str>) -> Result<Vec<ConvExplanation>, ExplainError> {
    explain_with(g, layer, |_, _| None)
}

/// Like [`explain()`], with the error of each truncation measured on data too: `stats(g, n)`
/// gives the statistics of the input patches of conv `n` (`None`: not measured).
pub fn explain_with(
    g: &Graph,
    layer: Option<&str>,
    mut stats: impl FnMut(&Graph, NodeIndex) -> Option<PatchStats>,
) -> Result<Vec<ConvExplanation>, ExplainError> {
    let convs: Vec<NodeIndex> = g
        .topo_order()
        .into_iter()
        .filter(|&n| matches!(g.node(n).op, Op::Conv(_)))
        .collect();
    match layer {
        Some(name) => {
            let Some(n) = g.find(name) else {
                return Err(ExplainError::NoSuchLayer {
                    name: name.to_string(),
                    convs: convs.iter().map(|&n| g.node(n).name.clone()).collect(),
                });
            };
            match &g.node(n).op {
                Op::Conv(c) => Ok(vec![explain_one(g, n, c, stats(g, n).as_ref())]),
                _ => Err(ExplainError::NotAConv {
                    name: name.to_string(),
                    op: convc_ir::print::op_label(g, n).to_string(),
                }),
            }
        }
        None => Ok(convs
            .into_iter()
            .filter_map(|n| match &g.node(n).op {
                Op::Conv(c) if c.kernel != [1, 1] => {
                    Some(explain_one(g, n, c, stats(g, n).as_ref()))
                }
                _ => None,
            })
            .collect()),
    }
}

/// Lays out rows of cells (each cell possibly several lines) in aligned columns.
fn grid(rows: &[Vec<Vec<String>>], indent: &str) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            for line in cell {
                widths[i] = widths[i].max(line.chars().count());
            }
        }
    }
    let mut s = String::new();
    for row in rows {
        let height = row.iter().map(Vec::len).max().unwrap_or(0).max(1);
        for k in 0..height {
            let mut line = String::from(indent);
            for (i, cell) in row.iter().enumerate() {
                let text = cell.get(k).map_or("", String::as_str);
                line.push_str(text);
                if i + 1 < row.len() {
                    let pad = widths[i] - text.chars().count() + 3;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
    }
    s
}

/// Word-wraps `text` to `width` columns, the first line indented by `first`, the rest by
/// `rest`.
fn wrap(text: &str, first: &str, rest: &str, width: usize) -> String {
    let mut s = String::new();
    let mut line = String::from(first);
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            s.push_str(&line);
            s.push('\n');
            line = String::from(rest);
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    s.push_str(&line);
    s.push('\n');
    s
}

/// Puts blocks of lines next to each other, `gap` spaces apart.
fn side_by_side(blocks: &[Vec<String>], indent: &str, gap: usize) -> String {
    let widths: Vec<usize> = blocks
        .iter()
        .map(|b| b.iter().map(|l| l.chars().count()).max().unwrap_or(0))
        .collect();
    let height = blocks.iter().map(Vec::len).max().unwrap_or(0);
    let mut s = String::new();
    for k in 0..height {
        let mut line = String::from(indent);
        for (b, w) in blocks.iter().zip(&widths) {
            let text = b.get(k).map_or("", String::as_str);
            line.push_str(text);
            line.extend(std::iter::repeat_n(' ', w - text.chars().count() + gap));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

fn cell(s: impl Into<String>) -> Vec<String> {
    vec![s.into()]
}

/// A relative error for people: `0`, `3.2e-8`, `0.412`.
pub fn error_text(e: f64) -> String {
    if e == 0.0 {
        "0".into()
    } else if e >= 0.01 {
        format!("{e:.3}")
    } else {
        format!("{e:.1e}")
    }
}

fn times(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.2}x", a as f64 / b as f64)
    }
}

fn matrix_text(form: Form, (count, rows, cols): (usize, usize, usize)) -> String {
    let (name, each) = match form {
        Form::Asymmetric => ("A_g[(c,i),(o,j)]", "group"),
        Form::AsymmetricPerOutput => ("M_o[(c,i),j]", "output"),
        Form::DepthwiseSeparable => ("B_c[o,(i,j)]", "input channel"),
    };
    if count == 1 {
        format!("{} {rows}x{cols}", name.replace("_g", ""))
    } else {
        format!("{name} {rows}x{cols}, one per {each} ({count})")
    }
}

/// Renders one explanation as aligned text for a terminal.
pub fn render_explanation(e: &ConvExplanation) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "layer `{}`: {}", e.layer, e.summary);
    let _ = writeln!(
        s,
        "  {} -> {}, weights {}, ||W||_F = {:.4}",
        e.input, e.output, e.weights, e.norm
    );
    s.push('\n');
    let mut head = vec![cell(""), cell("standard")];
    let mut layers_row = vec![cell("layers"), cell(e.standard.label.clone())];
    let mut shapes_row = vec![cell("weight shapes"), cell(e.standard.weight_shape.clone())];
    let std_macs = e
        .standard
        .exact_shape
        .iter()
        .map(|&d| d as u64)
        .product::<u64>();
    let mut formula_row = vec![cell("MACs per pixel"), cell(std_macs.to_string())];
    let mut svd_row = vec![cell("SVD of"), cell("-")];
    let mut exact_row = vec![cell("exact when"), cell("always")];
    let mut at_row = vec![cell("at that rank"), cell(e.standard.weight_shape.clone())];
    let mut params_row = vec![cell("params"), cell(e.params.to_string())];
    let mut macs_row = vec![cell("MACs"), cell(e.macs.to_string())];
    for f in &e.forms {
        let l = f.form.rank_letter();
        head.push(cell(f.form.name()));
        layers_row.push(f.layers.iter().map(|x| x.label.clone()).collect());
        shapes_row.push(f.layers.iter().map(|x| x.weight_shape.clone()).collect());
        formula_row.push(cell(f.macs_formula.clone()));
        svd_row.push(cell(matrix_text(f.form, f.matrices)));
        exact_row.push(cell(if f.exact_rank == 0 {
            format!("any {l} (all-zero weights)")
        } else {
            format!("{l} >= {} (of at most {})", f.exact_rank, f.max_rank)
        }));
        let shapes: Vec<String> = f
            .layers
            .iter()
            .map(|x| convc_tensor::fmt_shape(&x.exact_shape).replace(' ', ""))
            .collect();
        at_row.push(cell(format!(
            "{l}={}: {}",
            f.exact_rank.max(1),
            shapes.join(" + ")
        )));
        params_row.push(cell(format!(
            "{} ({})",
            f.params,
            times(f.params, e.params)
        )));
        macs_row.push(cell(format!(
            "{} ({})",
            f.macs,
            times(f.macs.value(), e.macs.value())
        )));
    }
    let rows = [
        head,
        layers_row,
        shapes_row,
        formula_row,
        svd_row,
        exact_row,
        at_row,
        params_row,
        macs_row,
    ];
    s.push_str(&grid(&rows, "  "));
    let with_rows: Vec<&FormExplanation> = e
        .forms
        .iter()
        .filter(|f| !f.truncations.is_empty())
        .collect();
    if !e.forms.is_empty() {
        s.push('\n');
        if with_rows.is_empty() {
            let _ = writeln!(
                s,
                "  no truncation of any form has fewer MACs than the standard conv"
            );
        } else {
            let measured = with_rows
                .iter()
                .any(|f| f.truncations.iter().any(|t| t.data_error.is_some()));
            let _ = writeln!(
                s,
                "{}",
                if measured {
                    "  truncations with fewer MACs (relative error of the weights ||W - W_r||_F / ||W||_F,\n  \
                     and of the layer's output on the data ||Y - Y_r||_F / ||Y||_F):"
                } else {
                    "  truncations with fewer MACs (relative error ||W - W_r||_F / ||W||_F):"
                }
            );
            let blocks: Vec<Vec<String>> = with_rows
                .iter()
                .map(|f| {
                    let mut head = vec![cell(f.form.rank_letter()), cell("error")];
                    if measured {
                        head[1] = cell("weights");
                        head.push(cell("on data"));
                    }
                    head.push(cell("MACs"));
                    let mut rows = vec![head];
                    for t in &f.truncations {
                        let mut row = vec![cell(t.rank.to_string()), cell(error_text(t.rel_error))];
                        if measured {
                            row.push(cell(t.data_error.map_or("-".into(), error_text)));
                        }
                        row.push(cell(format!(
                            "{} ({})",
                            t.macs,
                            times(t.macs.value(), e.macs.value())
                        )));
                        rows.push(row);
                    }
                    let mut lines = vec![f.form.name().to_string()];
                    lines.extend(grid(&rows, "").lines().map(str::to_string));
                    lines
                })
                .collect();
            s.push_str(&side_by_side(&blocks, "    ", 5));
        }
    }
    for n in &e.notes {
        s.push('\n');
        s.push_str(&wrap(&format!("note: {n}"), "  ", "        ", 96));
    }
    let _ = writeln!(s, "\n  decompose (default tolerance): {}", e.decision);
    s
}

/// Renders explanations one after another, with a short legend at the end.
pub fn render_explanations(es: &[ConvExplanation]) -> String {
    let mut s = String::new();
    if es.is_empty() {
        s.push_str("no conv layer with a kernel larger than 1x1 to explain\n");
        return s;
    }
    for e in es {
        s.push_str(&render_explanation(e));
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "asymmetric: KHx1 then 1xKW through r shared channels; exact when r >= rank of A[(c,i),(o,j)].\n\
         asymmetric per output: KHx1 then a 1xKW grouped by output channel, q channels per output;\n  \
         exact when q >= the largest rank of M_o[(c,i),j].\n\
         depthwise-separable: depthwise KHxKW with multiplier m, then pointwise 1x1; exact when\n  \
         m >= the largest rank of B_c[o,(i,j)] (m = 1: every input channel's kernels are copies of one).\n\
         exact: the smallest rank with relative error <= {EXACT_TOLERANCE:e} (every dropped singular value\n  \
         below {EXACT_TOLERANCE:e} of ||W||_F). decompose picks the cheapest form within the tolerance by\n  \
         MACs + {INTERMEDIATE_COST} x intermediate-tensor elements (written once, read once)."
    );
    s
}
