//! Cost figures every op declares: parameters, multiply-accumulates, bytes moved.
//!
//! MACs count convolution multiply-accumulates only (`out x C/groups x KH x KW x OH x OW`), as
//! the benchmark suite does; batchnorm, activations, additions and pooling count 0 MACs.

use petgraph::stable_graph::NodeIndex;

use crate::graph::Graph;
use crate::op::Op;

/// The cost of one node. Sizes that are still symbolic leave the totals unknown; the
/// per-pixel figure is always known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cost {
    /// Stored floats (weights, biases, batchnorm parameters).
    pub params: u64,
    /// MACs per output pixel (all output channels).
    pub macs_per_pixel: u64,
    /// Output pixels `OH x OW`, when known.
    pub out_pixels: Option<u64>,
    /// Bytes read and written (operands, result, parameters as f32), when sizes are known.
    pub bytes: Option<u64>,
}

impl Cost {
    /// Total MACs, when sizes are known.
    pub fn macs(&self) -> Option<u64> {
        self.out_pixels
            .and_then(|p| p.checked_mul(self.macs_per_pixel))
    }
}

fn pixels(g: &Graph, n: NodeIndex) -> Option<u64> {
    let (h, w) = g.node(n).shape.hw()?;
    (h as u64).checked_mul(w as u64)
}

fn elements(g: &Graph, n: NodeIndex) -> Option<u64> {
    pixels(g, n)?.checked_mul(g.node(n).shape.c as u64)
}

/// The cost of node `n`.
pub fn node_cost(g: &Graph, n: NodeIndex) -> Cost {
    let node = g.node(n);
    let (params, macs_per_pixel) = match &node.op {
        Op::Conv(c) => {
            let w = c.weight.data.numel() as u64;
            let b = c.bias.as_ref().map_or(0, |b| b.data.numel() as u64);
            (w + b, w)
        }
        Op::BatchNorm(_) => (4 * node.shape.c as u64, 0),
        Op::PRelu { slope } => (slope.data.numel() as u64, 0),
        // Every input value meets every tap of its group's output channels: MACs per output
        // pixel are those per input pixel scaled by the stride's spread, so count them per
        // input pixel over the output pixels (exact for stride 1, average otherwise).
        Op::ConvTranspose(t) => {
            let w = t.weight.data.numel() as u64;
            let b = t.bias.as_ref().map_or(0, |b| b.data.numel() as u64);
            let spread = (t.geom.stride[0] * t.geom.stride[1]) as u64;
            (w + b, w / spread.max(1))
        }
        _ => (0, 0),
    };
    let bytes = (|| {
        let mut total = elements(g, n)?;
        for o in g.operands(n) {
            total = total.checked_add(elements(g, o)?)?;
        }
        total.checked_add(params)?.checked_mul(4)
    })();
    Cost {
        params,
        macs_per_pixel,
        out_pixels: pixels(g, n),
        bytes,
    }
}

/// Totals over the whole graph: (params, MACs when known, MACs per output pixel summed).
pub fn totals(g: &Graph) -> Cost {
    let mut t = Cost {
        out_pixels: Some(0),
        bytes: Some(0),
        ..Cost::default()
    };
    let mut macs = Some(0u64);
    for n in g.g.node_indices() {
        let c = node_cost(g, n);
        t.params += c.params;
        t.macs_per_pixel += c.macs_per_pixel;
        macs = match (macs, c.macs()) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
        t.bytes = match (t.bytes, c.bytes) {
            (Some(a), Some(b)) => a.checked_add(b),
            _ => None,
        };
    }
    // Encode total MACs as out_pixels=1 so `macs()` gives it.
    match macs {
        Some(m) => {
            t.out_pixels = Some(1);
            t.macs_per_pixel = m;
        }
        None => t.out_pixels = None,
    }
    t
}

/// Total MACs of the graph when all sizes are known.
pub fn total_macs(g: &Graph) -> Option<u64> {
    totals(g).macs()
}

/// A count in short form: `147`, `1.18K`, `38.5M`, `4.71G`.
pub fn human(v: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")];
    let f = v as f64;
    for (scale, u) in UNITS {
        if f >= scale {
            let x = f / scale;
            return if x >= 100.0 {
                format!("{x:.0}{u}")
            } else if x >= 10.0 {
                format!("{x:.1}{u}")
            } else {
                format!("{x:.2}{u}")
            };
        }
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_counts() {
        assert_eq!(human(147), "147");
        assert_eq!(human(1_179_648), "1.18M");
        assert_eq!(human(38_535_168), "38.5M");
        assert_eq!(human(4_710_924_288), "4.71G");
        assert_eq!(human(115_605_504), "116M");
    }
}
