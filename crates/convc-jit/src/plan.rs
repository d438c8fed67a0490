//! From a graph to a program: fusion groups, one step per group (a kernel spec, its buffer
//! table, packed weights), and the buffer plan.
//!
//! Fusion: a convolution or an elementwise op starts a group; the group then absorbs its
//! tail's user while the tail has exactly one use (one edge), is not a network output, and the
//! user is a batchnorm, an activation or an `add` (the add's other operand becomes a residual
//! read in the epilogue). A group runs at the position of its last member in topological
//! order, when every operand of every member has been computed.

use petgraph::Direction;

use convc_ir::shape::Concrete;
use convc_ir::{BatchNorm, Conv, Graph, NodeIndex, Op, Pool, PoolKind};

use crate::JitError;
use crate::buf::AlignedBuf;
use crate::spec::{Act, ConvSpec, EltSpec, Ep, KernelSpec, PoolSpec, SLOT_EXTRA};

/// Where the value of a node lives during a run (per image).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    /// The network input number `i` (the caller's tensor).
    Input(usize),
    /// The network output number `i` (the result tensor).
    Output(usize),
    /// At this float offset in the arena.
    Arena(usize),
}

/// One entry of a step's buffer table.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Arg {
    /// A null pointer (an unused slot).
    Null,
    /// The value of node `node`, `off` floats in.
    Value { node: usize, off: usize },
    /// The step's scratch buffer (the padded input).
    Scratch,
    /// A parameter buffer of the program.
    Param(usize),
    /// The result tensor of output number `i`.
    Output(usize),
}

/// Copy of a `[c, h, w]` input into a zero-bordered buffer whose rows are split into `sw`
/// phases of `wq` values (see [`ConvSpec`]).
#[derive(Clone, Debug)]
pub(crate) struct PadCopy {
    pub src: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub pt: usize,
    pub pl: usize,
    pub hp: usize,
    pub sw: usize,
    pub wq: usize,
}

impl PadCopy {
    pub fn row_stride(&self) -> usize {
        self.sw * self.wq
    }
    pub fn chan_stride(&self) -> usize {
        self.hp * self.row_stride()
    }
    pub fn len(&self) -> usize {
        self.c * self.chan_stride()
    }
}

/// One kernel invocation per image.
#[derive(Debug)]
pub(crate) struct Step {
    /// The fused ops, e.g. `conv1+bn1+relu1`.
    pub name: String,
    pub spec: KernelSpec,
    /// Index into the compiled kernels (set after compilation).
    pub kernel: usize,
    pub args: Vec<Arg>,
    pub pad: Option<PadCopy>,
    /// Rough single-thread time in nanoseconds (decides whether to use threads).
    pub work_ns: f64,
    /// Multiply-accumulates per image (0 for non-convolutions).
    pub macs: u64,
    /// The node written.
    pub writes: usize,
}

impl Step {
    /// Nodes whose values the step reads.
    pub fn reads(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .args
            .iter()
            .skip(1)
            .filter_map(|a| match a {
                Arg::Value { node, .. } => Some(*node),
                _ => None,
            })
            .collect();
        if let Some(p) = &self.pad {
            v.push(p.src);
        }
        v
    }
}

/// The whole program for one image.
pub(crate) struct Plan {
    pub steps: Vec<Step>,
    pub params: Vec<AlignedBuf>,
    /// Location of each node's value (by node index).
    pub loc: Vec<Option<Loc>>,
    /// Arena offset of each step's scratch buffer.
    pub scratch: Vec<usize>,
    pub arena_len: usize,
    /// Per-image `[C, H, W]` of each input and output.
    pub in_shapes: Vec<[usize; 3]>,
    pub out_shapes: Vec<[usize; 3]>,
}

/// The largest buffer one image may need: byte offsets inside a buffer are 32-bit immediates.
const MAX_BUFFER_FLOATS: usize = (i32::MAX as usize) / 4 - 64;

fn err(m: impl Into<String>) -> JitError {
    JitError::new(m)
}

struct Builder<'g> {
    g: &'g Graph,
    conc: &'g Concrete,
    fma: bool,
    steps: Vec<(usize, Step)>,
    params: Vec<AlignedBuf>,
}

/// Builds the plan. `fma`: use fused multiply-add in convolutions.
pub(crate) fn build(g: &Graph, conc: &Concrete, fma: bool) -> Result<Plan, JitError> {
    let bound = g.node_bound();
    let order = g.topo_order();
    let mut pos = vec![usize::MAX; bound];
    for (i, n) in order.iter().enumerate() {
        pos[n.index()] = i;
    }
    let mut needed = vec![false; bound];
    for &o in &g.outputs {
        if !g.g.contains_node(o) {
            return Err(err(
                "the graph lists an output that is not one of its nodes",
            ));
        }
        needed[o.index()] = true;
    }
    for &n in order.iter().rev() {
        if needed[n.index()] {
            for o in g.operands(n) {
                needed[o.index()] = true;
            }
        }
    }
    let len: Vec<usize> = (0..bound)
        .map(|i| {
            let n = NodeIndex::new(i);
            if g.g.contains_node(n) {
                let [c, h, w] = conc.get(n);
                c.saturating_mul(h).saturating_mul(w)
            } else {
                0
            }
        })
        .collect();
    for &n in &order {
        if needed[n.index()] && len[n.index()] > MAX_BUFFER_FLOATS {
            return Err(err(format!(
                "layer `{}` is too large for the JIT: {} values per image (at most {MAX_BUFFER_FLOATS})",
                g.node(n).name,
                len[n.index()]
            )));
        }
    }

    let mut b = Builder {
        g,
        conc,
        fma,
        steps: Vec::new(),
        params: Vec::new(),
    };
    let mut absorbed = vec![false; bound];
    for &n in &order {
        if !needed[n.index()] || absorbed[n.index()] {
            continue;
        }
        let node = g.node(n);
        match &node.op {
            Op::Input { .. } => {}
            Op::Conv(c) => {
                let chain = chain(g, n, &needed, &mut absorbed);
                let tail = chain.last().copied().unwrap_or(n);
                let step = b.conv_step(n, c, &chain)?;
                b.steps.push((pos[tail.index()], step));
            }
            Op::BatchNorm(_) | Op::Unary(_) | Op::Add => {
                let chain = chain(g, n, &needed, &mut absorbed);
                let tail = chain.last().copied().unwrap_or(n);
                let step = b.elt_step(n, &chain)?;
                b.steps.push((pos[tail.index()], step));
            }
            Op::Pool(p) => {
                let step = b.pool_step(n, p)?;
                b.steps.push((pos[n.index()], step));
            }
            Op::GlobalAvgPool => {
                let x = operand(g, n, 0)?;
                let [c, h, w] = conc.get(x);
                let spec = KernelSpec::Gap { c, hw: h * w };
                let step = Step {
                    name: node.name.clone(),
                    spec,
                    kernel: 0,
                    args: vec![val(n), val(x), Arg::Null],
                    pad: None,
                    work_ns: (c * h * w) as f64,
                    macs: 0,
                    writes: n.index(),
                };
                b.steps.push((pos[n.index()], step));
            }
            Op::Concat => {
                let [_, h, w] = conc.get(n);
                let mut coff = 0;
                for x in g.operands(n) {
                    let [cx, hx, wx] = conc.get(x);
                    if (hx, wx) != (h, w) {
                        return Err(err(format!(
                            "concat `{}`: operands of different sizes",
                            node.name
                        )));
                    }
                    let step = Step {
                        name: format!("{}[{}]", node.name, g.node(x).name),
                        spec: KernelSpec::Elt(EltSpec {
                            c: cx,
                            hw: h * w,
                            ep: Vec::new(),
                        }),
                        kernel: 0,
                        args: vec![
                            Arg::Value {
                                node: n.index(),
                                off: coff * h * w,
                            },
                            val(x),
                            Arg::Null,
                        ],
                        pad: None,
                        work_ns: (cx * h * w) as f64 / 2.0,
                        macs: 0,
                        writes: n.index(),
                    };
                    b.steps.push((pos[n.index()], step));
                    coff += cx;
                }
            }
        }
    }
    // Stable: the copies of one concat stay in operand order.
    b.steps.sort_by_key(|s| s.0);
    let mut steps: Vec<Step> = b.steps.into_iter().map(|s| s.1).collect();

    // Locations: inputs in place, outputs written straight into the result tensors, the rest
    // in the arena. An output that is an input, or listed twice, is copied at the end.
    let mut loc: Vec<Option<Loc>> = vec![None; bound];
    for (i, &n) in g.inputs.iter().enumerate() {
        loc[n.index()] = Some(Loc::Input(i));
    }
    for (j, &o) in g.outputs.iter().enumerate() {
        if loc[o.index()].is_none() {
            loc[o.index()] = Some(Loc::Output(j));
        } else {
            let [c, h, w] = conc.get(o);
            steps.push(Step {
                name: format!("output{j}:{}", g.node(o).name),
                spec: KernelSpec::Elt(EltSpec {
                    c,
                    hw: h * w,
                    ep: Vec::new(),
                }),
                kernel: 0,
                args: vec![Arg::Output(j), val(o), Arg::Null],
                pad: None,
                work_ns: (c * h * w) as f64 / 2.0,
                macs: 0,
                writes: usize::MAX,
            });
        }
    }

    // Buffer plan: first fit over live intervals; a value lives from the first step that
    // writes it to the last step that touches it, a scratch buffer for its step only.
    let mut last = vec![0usize; bound];
    let mut first = vec![usize::MAX; bound];
    for (s, st) in steps.iter().enumerate() {
        if st.writes < bound {
            first[st.writes] = first[st.writes].min(s);
            last[st.writes] = last[st.writes].max(s);
        }
        for r in st.reads() {
            if r < bound {
                last[r] = last[r].max(s);
            }
        }
    }
    let mut live: Vec<(usize, usize, usize)> = Vec::new(); // (offset, len, last step)
    let mut arena_len = 0usize;
    let mut scratch = vec![0usize; steps.len()];
    let mut alloc = |live: &mut Vec<(usize, usize, usize)>, n: usize, end: usize| -> usize {
        let n = n.div_ceil(16) * 16;
        live.sort_by_key(|x| x.0);
        let mut cursor = 0;
        for &(off, l, _) in live.iter() {
            if off >= cursor + n {
                break;
            }
            cursor = cursor.max(off + l);
        }
        live.push((cursor, n, end));
        arena_len = arena_len.max(cursor + n);
        cursor
    };
    for (s, st) in steps.iter().enumerate() {
        live.retain(|x| x.2 >= s);
        if let Some(p) = &st.pad {
            scratch[s] = alloc(&mut live, p.len(), s);
        }
        let w = st.writes;
        if w < bound && first[w] == s && loc[w].is_none() {
            loc[w] = Some(Loc::Arena(alloc(&mut live, len[w], last[w])));
        }
    }

    let shape = |n: NodeIndex| conc.get(n);
    Ok(Plan {
        steps,
        params: b.params,
        loc,
        scratch,
        arena_len,
        in_shapes: g.inputs.iter().map(|&n| shape(n)).collect(),
        out_shapes: g.outputs.iter().map(|&n| shape(n)).collect(),
    })
}

fn val(n: NodeIndex) -> Arg {
    Arg::Value {
        node: n.index(),
        off: 0,
    }
}

fn operand(g: &Graph, n: NodeIndex, i: usize) -> Result<NodeIndex, JitError> {
    g.operands(n).get(i).copied().ok_or_else(|| {
        err(format!(
            "layer `{}` lacks operand {}",
            g.node(n).name,
            i + 1
        ))
    })
}

/// The members absorbed after `start` (marked in `absorbed`), in order: the `fuse` pass's
/// group headed by `start` when the graph has groups, else the same rule applied here
/// (`convc_ir::fusion` describes it).
fn chain(g: &Graph, start: NodeIndex, needed: &[bool], absorbed: &mut [bool]) -> Vec<NodeIndex> {
    // The `fuse` pass chose the groups: follow them (an empty list means no fusion at all).
    if let Some(groups) = &g.fusion {
        let Some(grp) = groups.iter().find(|grp| grp.nodes.first() == Some(&start)) else {
            return Vec::new();
        };
        if !convc_ir::fusion::still_valid(g, grp) {
            return Vec::new();
        }
        let members: Vec<NodeIndex> = grp.nodes[1..].to_vec();
        if members
            .iter()
            .any(|m| absorbed[m.index()] || !needed[m.index()])
        {
            return Vec::new();
        }
        for m in &members {
            absorbed[m.index()] = true;
        }
        return members;
    }
    let mut members = Vec::new();
    let mut t = start;
    loop {
        if g.is_output(t) {
            break;
        }
        let mut edges = g.g.neighbors_directed(t, Direction::Outgoing);
        let (Some(u), None) = (edges.next(), edges.next()) else {
            break;
        };
        if absorbed[u.index()] || !needed[u.index()] {
            break;
        }
        let ok = match g.node(u).op {
            Op::BatchNorm(_) | Op::Unary(_) => true,
            Op::Add => g.operands(u).len() == 2,
            _ => false,
        };
        if !ok {
            break;
        }
        absorbed[u.index()] = true;
        members.push(u);
        t = u;
    }
    members
}

/// Per-channel `scale`, `shift` of a batchnorm (in f64, rounded once).
fn bn_affine(bn: &BatchNorm, c: usize) -> Result<(Vec<f64>, Vec<f64>), JitError> {
    let (m, v, ga, be) = (
        bn.mean.data.data(),
        bn.var.data.data(),
        bn.gamma.data.data(),
        bn.beta.data.data(),
    );
    if m.len() != c || v.len() != c || ga.len() != c || be.len() != c {
        return Err(err(format!(
            "batchnorm parameters do not have {c} channels"
        )));
    }
    let eps = f64::from(bn.eps);
    let mut s = Vec::with_capacity(c);
    let mut t = Vec::with_capacity(c);
    for i in 0..c {
        let sc = f64::from(ga[i]) / (f64::from(v[i]) + eps).sqrt();
        s.push(sc);
        t.push(f64::from(be[i]) - f64::from(m[i]) * sc);
    }
    Ok((s, t))
}

impl Builder<'_> {
    fn param(&mut self, data: &[f32]) -> Result<usize, JitError> {
        let b = AlignedBuf::from_slice(data)
            .ok_or_else(|| err("not enough memory for the packed parameters"))?;
        self.params.push(b);
        Ok(self.params.len() - 1)
    }

    /// An affine parameter buffer: per channel, scale and shift each broadcast to 4 floats.
    fn affine(&mut self, scale: Option<&[f64]>, shift: &[f64]) -> Result<usize, JitError> {
        let mut v = Vec::with_capacity(shift.len() * 8);
        for (i, &t) in shift.iter().enumerate() {
            let s = scale.map_or(1.0, |s| s[i]) as f32;
            v.extend_from_slice(&[s; 4]);
            v.extend_from_slice(&[t as f32; 4]);
        }
        self.param(&v)
    }

    /// The epilogue of `members` (each an elementwise op whose first operand chain is `prev`).
    /// `pending`: a bias to merge into the first affine step.
    fn epilogue(
        &mut self,
        head: NodeIndex,
        members: &[NodeIndex],
        mut pending: Option<Vec<f64>>,
        args: &mut Vec<Arg>,
    ) -> Result<Vec<Ep>, JitError> {
        let mut ep = Vec::new();
        let mut prev = head;
        let c = self.conc.get(head)[0];
        for &m in members {
            match &self.g.node(m).op {
                Op::BatchNorm(bn) => {
                    let (s, mut t) = bn_affine(bn, c)?;
                    if let Some(bias) = pending.take() {
                        for i in 0..c {
                            t[i] += bias[i] * s[i];
                        }
                    }
                    let p = self.affine(Some(&s), &t)?;
                    ep.push(Ep::Affine {
                        slot: args.len(),
                        scale: true,
                    });
                    args.push(Arg::Param(p));
                }
                other => {
                    if let Some(bias) = pending.take() {
                        let p = self.affine(None, &bias)?;
                        ep.push(Ep::Affine {
                            slot: args.len(),
                            scale: false,
                        });
                        args.push(Arg::Param(p));
                    }
                    match other {
                        Op::Unary(u) => ep.push(Ep::Act(Act::from_unary(*u))),
                        Op::Add => {
                            let ops = self.g.operands(m);
                            let r = if ops.first() == Some(&prev) {
                                ops.get(1)
                            } else {
                                ops.first()
                            };
                            let r = *r.ok_or_else(|| err("add without two operands"))?;
                            ep.push(Ep::Add { slot: args.len() });
                            args.push(val(r));
                        }
                        _ => {
                            return Err(err("internal error: a non-elementwise op in an epilogue"));
                        }
                    }
                }
            }
            prev = m;
        }
        if let Some(bias) = pending.take() {
            let p = self.affine(None, &bias)?;
            ep.push(Ep::Affine {
                slot: args.len(),
                scale: false,
            });
            args.push(Arg::Param(p));
        }
        Ok(ep)
    }

    fn group_name(&self, head: NodeIndex, members: &[NodeIndex]) -> String {
        let mut s = self.g.node(head).name.clone();
        for &m in members {
            s.push('+');
            s.push_str(&self.g.node(m).name);
        }
        s
    }

    fn conv_step(
        &mut self,
        n: NodeIndex,
        conv: &Conv,
        members: &[NodeIndex],
    ) -> Result<Step, JitError> {
        let name = self.g.node(n).name.clone();
        let bad = |m: String| err(format!("layer `{name}`: {m}"));
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [oc, oh, ow] = self.conc.get(n);
        let [kh, kw] = conv.kernel;
        let [sh, sw] = conv.stride;
        let [dh, dw] = conv.dilation;
        let groups = conv.groups;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || dh == 0 || dw == 0 || groups == 0 {
            return Err(bad(
                "kernel, stride, dilation and groups must be at least 1".into(),
            ));
        }
        if c % groups != 0 || oc % groups != 0 || oc != conv.out {
            return Err(bad(format!(
                "{c} input and {oc} output channels do not fit groups={groups}"
            )));
        }
        let (cg, og) = (c / groups, oc / groups);
        if conv.weight.data.shape() != [oc, cg, kh, kw] {
            return Err(bad("weights of the wrong shape".into()));
        }
        let [pt, pb, pl, pr] = conv
            .pad
            .resolve(h, w, conv.kernel, conv.stride, conv.dilation);
        let too_big = || bad("the padded input is too large for the JIT".into());
        let hp = h
            .checked_add(pt)
            .and_then(|v| v.checked_add(pb))
            .ok_or_else(too_big)?;
        let wp = w
            .checked_add(pl)
            .and_then(|v| v.checked_add(pr))
            .ok_or_else(too_big)?;
        if c.checked_mul(hp)
            .and_then(|v| v.checked_mul(wp))
            .is_none_or(|n| n > MAX_BUFFER_FLOATS)
        {
            return Err(too_big());
        }
        let span_h = dh.checked_mul(kh - 1).ok_or_else(too_big)? + 1;
        let span_w = dw.checked_mul(kw - 1).ok_or_else(too_big)? + 1;
        if hp < span_h
            || wp < span_w
            || (hp - span_h) / sh + 1 != oh
            || (wp - span_w) / sw + 1 != ow
        {
            return Err(bad(format!(
                "output size {oh}x{ow} does not follow from the input {h}x{w}"
            )));
        }
        let pad = if pt + pb + pl + pr > 0 || sw > 1 {
            let wq = wp.div_ceil(sw);
            Some(PadCopy {
                src: x.index(),
                c,
                h,
                w,
                pt,
                pl,
                hp,
                sw,
                wq,
            })
        } else {
            None
        };
        let (row_stride, chan_stride, wq) = match &pad {
            Some(p) => (p.row_stride(), p.chan_stride(), p.wq),
            None => (w, h * w, w),
        };
        if let Some(p) = &pad
            && p.len() > MAX_BUFFER_FLOATS
        {
            return Err(bad("the padded input is too large for the JIT".into()));
        }
        let nb = og.div_ceil(6);
        let ocb = og.div_ceil(nb);
        // Pack the weights in the order the kernel reads them: per block (group, block), per
        // tap (c, kh, kw), the block's output channels, each broadcast to 4 floats.
        let taps = cg * kh * kw;
        let wdata = conv.weight.data.data();
        let mut packed = vec![0f32; groups * nb * taps * ocb * 4];
        for gi in 0..groups {
            for bi in 0..nb {
                let ocb_b = ocb.min(og - bi * ocb);
                let base = (gi * nb + bi) * taps * ocb * 4;
                for t in 0..taps {
                    for q in 0..ocb_b {
                        let o = gi * og + bi * ocb + q;
                        let v = wdata[o * taps + t];
                        let at = base + (t * ocb_b + q) * 4;
                        packed[at..at + 4].copy_from_slice(&[v; 4]);
                    }
                }
            }
        }
        let wslot = self.param(&packed)?;
        let tail = members.last().copied().unwrap_or(n);
        let mut args = vec![
            val(tail),
            if pad.is_some() { Arg::Scratch } else { val(x) },
            Arg::Param(wslot),
        ];
        debug_assert_eq!(args.len(), SLOT_EXTRA);
        let bias = conv.bias.as_ref().map(|b| {
            b.data
                .data()
                .iter()
                .map(|&v| f64::from(v))
                .collect::<Vec<f64>>()
        });
        if let Some(bv) = &bias
            && bv.len() != oc
        {
            return Err(bad("bias of the wrong length".into()));
        }
        let ep = self.epilogue(n, members, bias, &mut args)?;
        // Memory traffic of the two item orders (bytes): block-major streams the input once per
        // block, row-major streams the weights once per output row.
        let in_bytes = (c * hp * wp * 4) as f64;
        let w_bytes = (packed.len() * 4) as f64;
        let row_major = in_bytes + oh as f64 * w_bytes < w_bytes + nb as f64 * in_bytes;
        let spec = ConvSpec {
            row_major,
            groups,
            cg,
            og,
            oh,
            ow,
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            row_stride,
            chan_stride,
            wq,
            ocb,
            ep,
            fma: self.fma,
        };
        let macs = (oc * oh * ow) as u64 * taps as u64;
        Ok(Step {
            name: self.group_name(n, members),
            spec: KernelSpec::Conv(spec),
            kernel: 0,
            args,
            pad,
            work_ns: macs as f64 / 6.0,
            macs,
            writes: tail.index(),
        })
    }

    fn elt_step(&mut self, n: NodeIndex, members: &[NodeIndex]) -> Result<Step, JitError> {
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(n);
        let tail = members.last().copied().unwrap_or(n);
        let mut args = vec![val(tail), val(x), Arg::Null];
        // The head itself is the first step of the chain, reading `x`.
        let mut all = vec![n];
        all.extend_from_slice(members);
        let ep = self.epilogue(x, &all, None, &mut args)?;
        Ok(Step {
            name: self.group_name(n, members),
            spec: KernelSpec::Elt(EltSpec { c, hw: h * w, ep }),
            kernel: 0,
            args,
            pad: None,
            work_ns: (c * h * w * all.len()) as f64 / 2.0,
            macs: 0,
            writes: tail.index(),
        })
    }

    fn pool_step(&mut self, n: NodeIndex, p: &Pool) -> Result<Step, JitError> {
        let name = &self.g.node(n).name;
        let x = operand(self.g, n, 0)?;
        let [c, h, w] = self.conc.get(x);
        let [_, oh, ow] = self.conc.get(n);
        let [kh, kw] = p.kernel;
        let [sh, sw] = p.stride;
        let [pt, pb, pl, pr] = p.pad.resolve(h, w, p.kernel, p.stride, [1, 1]);
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || pt >= kh || pb >= kh || pl >= kw || pr >= kw
        {
            return Err(err(format!(
                "layer `{name}`: padding ({pt}, {pb}, {pl}, {pr}) is not smaller than the kernel {kh}x{kw} on each side"
            )));
        }
        let hp = h.saturating_add(pt).saturating_add(pb);
        let wp = w.saturating_add(pl).saturating_add(pr);
        if hp < kh || wp < kw || (hp - kh) / sh + 1 != oh || (wp - kw) / sw + 1 != ow {
            return Err(err(format!(
                "layer `{name}`: output size {oh}x{ow} does not follow from the input {h}x{w}"
            )));
        }
        let spec = PoolSpec {
            max: p.kind == PoolKind::Max,
            c,
            h,
            w,
            oh,
            ow,
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
        };
        Ok(Step {
            name: name.clone(),
            spec: KernelSpec::Pool(spec),
            kernel: 0,
            args: vec![val(n), val(x), Arg::Null],
            pad: None,
            work_ns: (c * oh * ow * (kh * kw + 4)) as f64,
            macs: 0,
            writes: n.index(),
        })
    }
}
