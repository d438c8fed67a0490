//! The cheapest network within an error budget: each conv's form (standard, asymmetric,
//! asymmetric per output, depthwise-separable) and rank chosen so that the network needs as
//! few MACs as possible while its output's relative error on sample inputs stays within `E`.
//!
//! 1. **Options** ([`layer_options`]): for every conv, the standard form and each decomposed
//!    form at a set of ranks ([`candidate_ranks`]) whose MACs are below the standard's, with
//!    its weight error `||W - W_r||_F / ||W||_F` and, given the layer's input activations
//!    ([`PatchStats`]), its error on data `||Y - Y_r||_F / ||Y||_F`.
//! 2. **Greedy** ([`greedy_path`]), in the style of Jaderberg et al. 2014 and Lebedev et al.
//!    2015: from the network as written, repeatedly move the one layer whose next cheaper
//!    option on its [`frontier`] (the Pareto front of MACs and error) saves the most MACs per
//!    unit of added squared error (the data error where measured, else the weight error),
//!    until no layer has a cheaper option. The predicted
//!    network error after a step is `sqrt(sum over layers of e_l^2)`.
//! 3. **Verify** ([`plan_budget`]): the longest prefix of that path whose predicted error is
//!    within `E` is built and its output error measured on the samples (by the caller's
//!    `measure`); if it is over `E` the search backs off, if under it tries further along the
//!    path (a bisection over the prefix length, at most [`MAX_PROBES`] measurements). The
//!    answer is always a measured network within `E` (the network as written, step 0, at
//!    worst).
//!
//! The caller supplies the activations and the measurement, so that the plan can be reused by
//! any command that runs or writes the network (`explain`, `run`, `export`).

use std::fmt::Write as _;

use convc_ir::{Conv, Graph, NodeIndex, Op, cost};

use crate::decompose::{self, Plan};
use crate::explain::{error_text, layer_pixels};
use crate::factor::{Factorization, Form, Geom, layers};
use crate::measure::PatchStats;

/// The most networks [`plan_budget`] builds and measures.
pub const MAX_PROBES: usize = 12;

/// One way to compute a conv: the standard form, or a decomposed form at a rank.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// `None` for the conv as written.
    pub form: Option<Form>,
    /// The rank kept (0 for the standard form).
    pub rank: usize,
    /// Total MACs for one image.
    pub macs: u64,
    /// `||W - W_r||_F / ||W||_F`, from the f32 factors.
    pub weight_error: f64,
    /// `||Y - Y_r||_F / ||Y||_F` on the layer's input activations, when measured.
    pub data_error: Option<f64>,
}

impl Candidate {
    /// The error the greedy search uses: on data where measured, else of the weights.
    pub fn error(&self) -> f64 {
        self.data_error.unwrap_or(self.weight_error)
    }
    /// `standard`, `asymmetric r=4`, `depthwise-separable m=2`.
    pub fn label(&self) -> String {
        match self.form {
            None => "standard".into(),
            Some(f) => format!("{f} {}={}", f.rank_letter(), self.rank),
        }
    }
}

/// Every option of one conv.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    /// The conv's node in the graph the options were made for.
    pub node: NodeIndex,
    /// Its name.
    pub layer: String,
    /// Its input channels.
    pub in_ch: usize,
    /// The options; the first is the standard form.
    pub candidates: Vec<Candidate>,
    /// The factorisations of its forms (for building the chosen layers and for plots).
    pub facts: Vec<Factorization>,
    /// Positions sampled for the data error, and positions there were.
    pub sampled: Option<(usize, usize)>,
}

/// The ranks tried for a form whose cheaper ranks go up to `last`: every rank to 16, then
/// steps of about 20%, then `last`, and `exact` when it is at most `last`.
pub fn candidate_ranks(last: usize, exact: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (1..=last.min(16)).collect();
    let mut r = 16usize;
    while r < last {
        r = (r + r / 5).max(r + 1);
        if r < last {
            v.push(r);
        }
    }
    if last > 16 {
        v.push(last);
    }
    if exact >= 1 && exact <= last && !v.contains(&exact) {
        v.push(exact);
        v.sort_unstable();
    }
    v
}

/// The relative error on data of `fact` at rank `r` (from its f32 factors), given the
/// statistics and the output energy of the conv.
pub fn data_error(
    fact: &Factorization,
    r: usize,
    stats: &PatchStats,
    energy: f64,
    w: &[f32],
) -> Option<f64> {
    let (f1, f2) = fact.factors(r)?;
    let rec = fact.reconstruct(r, &f1, &f2);
    Some(stats.relative_error(&fact.geom, w, &rec, energy))
}

/// The options of conv node `n` (known sizes needed; `None` otherwise, or for a conv with no
/// smaller form). `stats` are its input patches' statistics, for the data error.
pub fn layer_options(g: &Graph, n: NodeIndex, stats: Option<&PatchStats>) -> Option<LayerOptions> {
    let Op::Conv(conv) = &g.node(n).op else {
        return None;
    };
    let x = *g.operands(n).first()?;
    let input = g.node(x).shape.clone();
    let geom = Geom::of(conv, input.c)?;
    let weights = conv.weight.data.data();
    if weights.iter().all(|&w| w == 0.0) || weights.iter().any(|w| !w.is_finite()) {
        return None;
    }
    let standard = cost::node_cost(g, n).macs()?;
    let mut out = LayerOptions {
        node: n,
        layer: g.node(n).name.clone(),
        in_ch: input.c,
        candidates: vec![Candidate {
            form: None,
            rank: 0,
            macs: standard,
            weight_error: 0.0,
            data_error: stats.map(|_| 0.0),
        }],
        facts: Vec::new(),
        sampled: stats.map(|s| (s.positions, s.total_positions)),
    };
    let bias = conv.bias.as_ref().map(|b| b.data.data());
    let energy = stats.map(|s| s.output_energy(&geom, weights, bias));
    let hashed = crate::cache::Hashed::new(weights);
    for form in geom.candidates() {
        if geom.too_large(form) {
            continue;
        }
        let key = hashed.key(form, geom);
        let Some(fact) = crate::cache::factor(&key, form, geom, weights) else {
            continue;
        };
        let [p1, p2] = layer_pixels(form, conv, &input)?;
        let macs = |r: usize| {
            let s = layers(form, r, conv, input.c);
            s[0].weights() * p1 + s[1].weights() * p2
        };
        let last = (1..=fact.max_rank())
            .take_while(|&r| macs(r) < standard)
            .last()
            .unwrap_or(0);
        for r in candidate_ranks(last, fact.exact_rank()) {
            let Some((f1, f2)) = fact.factors(r) else {
                continue;
            };
            let weight_error = fact.measured_error(r, &f1, &f2);
            let data_error = match (stats, energy) {
                (Some(s), Some(e)) => data_error(&fact, r, s, e, weights),
                _ => None,
            };
            out.candidates.push(Candidate {
                form: Some(form),
                rank: r,
                macs: macs(r),
                weight_error,
                data_error,
            });
        }
        out.facts.push(fact);
    }
    (out.candidates.len() > 1).then_some(out)
}

/// One step of the greedy path: layer `layer` (an index into the options) moves to candidate
/// `candidate`.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Index into the layers.
    pub layer: usize,
    /// Index into that layer's candidates.
    pub candidate: usize,
    /// Network MACs after the step.
    pub macs: u64,
    /// Predicted network error after the step.
    pub predicted: f64,
}

/// The candidates of one layer worth stopping at, from the standard form (most MACs) down to
/// the fewest MACs: the standard form, then every candidate with fewer MACs than it that no
/// other candidate beats on both MACs and error (the Pareto front), by MACs descending.
pub fn frontier(opts: &LayerOptions) -> Vec<usize> {
    let c = &opts.candidates;
    let mut idx: Vec<usize> = (1..c.len()).filter(|&j| c[j].macs < c[0].macs).collect();
    // By MACs ascending; among equal MACs the smallest error first.
    idx.sort_by(|&a, &b| {
        c[a].macs
            .cmp(&c[b].macs)
            .then(c[a].error().total_cmp(&c[b].error()))
    });
    let mut front = Vec::new();
    let mut best = f64::INFINITY;
    for j in idx {
        if c[j].error() < best {
            best = c[j].error();
            front.push(j);
        }
    }
    front.push(0);
    front.reverse();
    front
}

/// The greedy path from the network as written (`macs` MACs) to the cheapest options (see the
/// module docs): each layer moves one point at a time along its [`frontier`]. The choice after `k` steps is
/// [`choice_after`]`(k)`.
pub fn greedy_path(layers: &[LayerOptions], macs: u64) -> Vec<Step> {
    let fronts: Vec<Vec<usize>> = layers.iter().map(frontier).collect();
    let mut pos = vec![0usize; layers.len()];
    let e2 = |l: usize, j: usize| layers[l].candidates[j].error().powi(2);
    let mut total = macs;
    let mut sum_e2 = 0.0f64;
    let mut path = Vec::new();
    loop {
        // (score, MACs saved, layer): most saved per added squared error; a move that adds
        // no error comes first, the larger saving winning.
        let mut best: Option<(f64, u64, usize)> = None;
        for (l, h) in fronts.iter().enumerate() {
            let (Some(&now), Some(&next)) = (h.get(pos[l]), h.get(pos[l] + 1)) else {
                continue;
            };
            let c = &layers[l].candidates;
            let saved = c[now].macs.saturating_sub(c[next].macs);
            let added = e2(l, next) - e2(l, now);
            let score = if added <= 0.0 {
                f64::INFINITY
            } else {
                saved as f64 / added
            };
            if best.is_none_or(|(s, sv, _)| score > s || (score == s && saved > sv)) {
                best = Some((score, saved, l));
            }
        }
        let Some((_, saved, l)) = best else { break };
        let (now, next) = (fronts[l][pos[l]], fronts[l][pos[l] + 1]);
        sum_e2 += e2(l, next) - e2(l, now);
        pos[l] += 1;
        total = total.saturating_sub(saved);
        path.push(Step {
            layer: l,
            candidate: next,
            macs: total,
            predicted: sum_e2.max(0.0).sqrt(),
        });
    }
    path
}

/// Each layer's candidate after the first `k` steps of `path`.
pub fn choice_after(path: &[Step], n_layers: usize, k: usize) -> Vec<usize> {
    let mut cur = vec![0usize; n_layers];
    for s in &path[..k.min(path.len())] {
        cur[s.layer] = s.candidate;
    }
    cur
}

/// `g` with every layer rewritten into its chosen candidate (`choice[l]` indexes
/// `layers[l].candidates`; the standard form leaves the layer as it is). `None` if a rewrite
/// failed (it would not keep the layer's shape, or an SVD failed).
pub fn build(g: &Graph, layers: &[LayerOptions], choice: &[usize]) -> Option<Graph> {
    let mut out = g.clone();
    for (opts, &j) in layers.iter().zip(choice) {
        let c = &opts.candidates[j];
        let Some(form) = c.form else { continue };
        let Op::Conv(conv) = &out.node(opts.node).op else {
            return None;
        };
        let conv: Conv = conv.clone();
        let fact = opts.facts.iter().find(|f| f.form == form)?;
        let (f1, f2) = fact.factors(c.rank)?;
        let plan = Plan {
            form,
            rank: c.rank,
            rel_error: c.weight_error,
            f1,
            f2,
            cost: 0.0,
        };
        decompose::apply(&mut out, opts.node, &conv, opts.in_ch, plan)?;
    }
    Some(out)
}

/// One network built and measured while verifying.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Steps of the path taken.
    pub step: usize,
    /// Its MACs.
    pub macs: u64,
    /// Its predicted error.
    pub predicted: f64,
    /// Its measured output error.
    pub measured: f64,
}

/// The answer of [`plan_budget`].
#[derive(Clone, Debug)]
pub struct BudgetPlan {
    /// The budget `E`.
    pub budget: f64,
    /// The layers considered.
    pub layers: Vec<LayerOptions>,
    /// The greedy path.
    pub path: Vec<Step>,
    /// Every network measured, in the order measured.
    pub probes: Vec<Probe>,
    /// Steps of the path taken.
    pub step: usize,
    /// The chosen candidate of each layer.
    pub choice: Vec<usize>,
    /// MACs of the network as written (after the exact passes run before planning).
    pub macs_before: u64,
    /// MACs of the chosen network.
    pub macs_after: u64,
    /// The chosen network's measured output error.
    pub measured_error: f64,
    /// The chosen network.
    pub graph: Graph,
}

impl BudgetPlan {
    /// The chosen candidate of layer `l`.
    pub fn chosen(&self, l: usize) -> &Candidate {
        &self.layers[l].candidates[self.choice[l]]
    }
}

/// Chooses the network (see the module docs): `layers` are the options of `g`'s convs,
/// `measure(graph)` returns a network's output error on the samples.
pub fn plan_budget<E>(
    g: &Graph,
    layers: Vec<LayerOptions>,
    budget: f64,
    mut measure: impl FnMut(&Graph) -> Result<f64, E>,
) -> Result<BudgetPlan, E> {
    let macs_before = cost::total_macs(g).unwrap_or(0);
    let path = greedy_path(&layers, macs_before);
    let n = layers.len();
    let mut probes: Vec<Probe> = Vec::new();
    let mut probe = |k: usize, probes: &mut Vec<Probe>| -> Result<Option<bool>, E> {
        if let Some(p) = probes.iter().find(|p| p.step == k) {
            return Ok(Some(p.measured <= budget));
        }
        let Some(built) = build(g, &layers, &choice_after(&path, n, k)) else {
            return Ok(None);
        };
        let measured = measure(&built)?;
        let (macs, predicted) = match k {
            0 => (macs_before, 0.0),
            _ => (path[k - 1].macs, path[k - 1].predicted),
        };
        probes.push(Probe {
            step: k,
            macs,
            predicted,
            measured,
        });
        Ok(Some(measured <= budget))
    };
    let k0 = (0..=path.len())
        .rev()
        .find(|&k| k == 0 || path[k - 1].predicted <= budget)
        .unwrap_or(0);
    // `lo` is within the budget (step 0 is taken to be), `hi` is over it or past the end.
    let (mut lo, mut hi) = match probe(k0, &mut probes)? {
        Some(true) if k0 == path.len() => (k0, k0 + 1),
        Some(true) => match probe(path.len(), &mut probes)? {
            Some(true) => (path.len(), path.len() + 1),
            _ => (k0, path.len()),
        },
        _ => (0, k0),
    };
    while hi > lo + 1 && probes.len() < MAX_PROBES {
        let mid = lo + (hi - lo) / 2;
        match probe(mid, &mut probes)? {
            Some(true) => lo = mid,
            _ => hi = mid,
        }
    }
    if !probes.iter().any(|p| p.step == lo && p.measured <= budget) {
        // Step 0 was assumed: measure the network as written, whatever it gives.
        lo = 0;
        probe(0, &mut probes)?;
    }
    let choice = choice_after(&path, n, lo);
    let graph = build(g, &layers, &choice).unwrap_or_else(|| g.clone());
    let measured_error = probes
        .iter()
        .find(|p| p.step == lo)
        .map_or(0.0, |p| p.measured);
    let macs_after = cost::total_macs(&graph).unwrap_or(macs_before);
    Ok(BudgetPlan {
        budget,
        choice,
        layers,
        path,
        probes,
        step: lo,
        macs_before,
        macs_after,
        measured_error,
        graph,
    })
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.2}x", a as f64 / b as f64)
    }
}

/// Renders the plan as text: one row per layer, then the network's figures. `samples`
/// describes the sample inputs (`2 random inputs [3,128,128] (seed 0)`).
pub fn render_budget(p: &BudgetPlan, samples: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "budget: network output error <= {} (relative, ||y' - y||_F / ||y||_F on {samples})",
        p.budget
    );
    s.push('\n');
    let mut rows = vec![
        [
            "layer",
            "chosen",
            "MACs",
            "saved",
            "weight error",
            "data error",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (l, opts) in p.layers.iter().enumerate() {
        let c = p.chosen(l);
        let std = opts.candidates[0].macs;
        rows.push(vec![
            format!("`{}`", opts.layer),
            c.label(),
            format!(
                "{} -> {} ({})",
                cost::human(std),
                cost::human(c.macs),
                ratio(c.macs, std)
            ),
            cost::human(std - c.macs.min(std)),
            error_text(c.weight_error),
            c.data_error.map_or("-".into(), error_text),
        ]);
    }
    s.push_str(&table(&rows, "  "));
    let predicted = if p.step == 0 {
        0.0
    } else {
        p.path[p.step - 1].predicted
    };
    let _ = writeln!(
        s,
        "\nnetwork: MACs {} -> {} ({}, {} saved)",
        cost::human(p.macs_before),
        cost::human(p.macs_after),
        ratio(p.macs_after, p.macs_before),
        cost::human(p.macs_before.saturating_sub(p.macs_after))
    );
    let _ = writeln!(
        s,
        "  output error: predicted {} (root of the sum of the layers' squared errors), measured {} {} {}",
        error_text(predicted),
        error_text(p.measured_error),
        if p.measured_error <= p.budget {
            "<="
        } else {
            ">"
        },
        p.budget
    );
    let probes: Vec<String> = p
        .probes
        .iter()
        .map(|q| {
            format!(
                "step {} ({}, {})",
                q.step,
                cost::human(q.macs),
                error_text(q.measured)
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "  greedy path: {} steps, step {} taken; measured: {}",
        p.path.len(),
        p.step,
        probes.join(", ")
    );
    s
}

/// Aligned columns, the first row a header.
fn table(rows: &[Vec<String>], indent: &str) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; ncols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let mut line = String::from(indent);
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count() + 3));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(macs: u64, e: f64) -> Candidate {
        Candidate {
            form: Some(Form::Asymmetric),
            rank: 1,
            macs,
            weight_error: e,
            data_error: None,
        }
    }

    fn opts(c: Vec<Candidate>) -> LayerOptions {
        LayerOptions {
            node: NodeIndex::new(0),
            layer: "l".into(),
            in_ch: 1,
            candidates: c,
            facts: vec![],
            sampled: None,
        }
    }

    #[test]
    fn ranks_are_dense_then_geometric() {
        assert_eq!(candidate_ranks(5, 3), vec![1, 2, 3, 4, 5]);
        assert_eq!(candidate_ranks(0, 3), Vec::<usize>::new());
        let v = candidate_ranks(100, 50);
        assert!(v.starts_with(&(1..=16).collect::<Vec<_>>()));
        assert!(v.contains(&100) && v.contains(&50));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn greedy_takes_free_savings_first_then_best_ratio() {
        let a = opts(vec![cand(100, 0.0), cand(50, 0.1), cand(10, 0.5)]);
        let b = opts(vec![cand(100, 0.0), cand(60, 0.0), cand(20, 0.01)]);
        let path = greedy_path(&[a, b], 200);
        // b's error-free move, then b's cheap one (40 MACs for 1e-4), then a's two, in order.
        assert_eq!((path[0].layer, path[0].candidate), (1, 1));
        assert_eq!((path[1].layer, path[1].candidate), (1, 2));
        assert_eq!(path[1].macs, 120);
        assert_eq!((path[2].layer, path[2].candidate), (0, 1));
        assert_eq!(path.last().map(|s| s.macs), Some(30));
        assert!(path.windows(2).all(|w| w[0].macs > w[1].macs));
        assert_eq!(choice_after(&path, 2, 2), vec![0, 2]);
    }

    #[test]
    fn frontier_keeps_only_points_worth_stopping_at() {
        // 80 MACs at 0.3 error is beaten by 50 MACs at 0.1: never a stop.
        let a = opts(vec![
            cand(100, 0.0),
            cand(80, 0.3),
            cand(50, 0.1),
            cand(10, 0.5),
            cand(120, 0.0),
        ]);
        assert_eq!(frontier(&a), vec![0, 2, 3]);
        // A cheaper option with less error replaces the dearer one.
        let b = opts(vec![cand(100, 0.0), cand(90, 0.2), cand(60, 0.0)]);
        assert_eq!(frontier(&b), vec![0, 2]);
        // Not convex: every point is still a stop (a budget may fall between them).
        let c = opts(vec![cand(100, 0.0), cand(70, 0.6), cand(10, 0.95)]);
        assert_eq!(frontier(&c), vec![0, 1, 2]);
    }
}
