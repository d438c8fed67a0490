//! Spatial sizes that may be symbolic (`H`, `W`) until data arrives.
//!
//! A size is a small expression tree over one symbol: additions of constants, floor and ceiling
//! divisions. Constructors simplify (`(H+1)-1` is `H`, `x/1` is `x`), so structurally equal
//! expressions are equal sizes; `add`/`concat` operands are compared that way.

use std::collections::BTreeMap;
use std::fmt;

/// Values bound to symbols, e.g. `H = 224`.
pub type Bindings = BTreeMap<String, u64>;

/// A spatial size: a number, a symbol, or arithmetic on them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size (may be <= 0 for an invalid layer before validation reports it).
    Lit(i64),
    /// A symbol bound when data arrives.
    Sym(String),
    /// `e + k`.
    Add(Box<Dim>, i64),
    /// `floor(e / k)`, k > 1.
    FloorDiv(Box<Dim>, i64),
    /// `ceil(e / k)`, k > 1.
    CeilDiv(Box<Dim>, i64),
    /// `e * k`, k > 1.
    Mul(Box<Dim>, i64),
}

impl Dim {
    /// `self + k`, simplified.
    pub fn add(&self, k: i64) -> Dim {
        match self {
            _ if k == 0 => self.clone(),
            Dim::Lit(v) => Dim::Lit(v.saturating_add(k)),
            Dim::Add(e, a) => e.add(a.saturating_add(k)),
            _ => Dim::Add(Box::new(self.clone()), k),
        }
    }
    /// `floor(self / k)` for k >= 1, simplified.
    pub fn floor_div(&self, k: i64) -> Dim {
        match self {
            _ if k <= 1 => self.clone(),
            Dim::Lit(v) => Dim::Lit(v.div_euclid(k)),
            _ => Dim::FloorDiv(Box::new(self.clone()), k),
        }
    }
    /// `ceil(self / k)` for k >= 1, simplified.
    pub fn ceil_div(&self, k: i64) -> Dim {
        match self {
            _ if k <= 1 => self.clone(),
            Dim::Lit(v) => Dim::Lit(-((-v).div_euclid(k))),
            _ => Dim::CeilDiv(Box::new(self.clone()), k),
        }
    }
    /// `self * k` for k >= 1, simplified.
    pub fn mul(&self, k: i64) -> Dim {
        match self {
            _ if k <= 1 => self.clone(),
            Dim::Lit(v) => Dim::Lit(v.saturating_mul(k)),
            _ => Dim::Mul(Box::new(self.clone()), k),
        }
    }
    /// The value when known without bindings.
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Lit(v) => Some(*v),
            _ => None,
        }
    }
    /// The value under `b`, or `None` when a symbol is unbound.
    pub fn eval(&self, b: &Bindings) -> Option<i64> {
        Some(match self {
            Dim::Lit(v) => *v,
            Dim::Sym(s) => i64::try_from(*b.get(s)?).ok()?,
            Dim::Add(e, k) => e.eval(b)?.checked_add(*k)?,
            Dim::FloorDiv(e, k) => e.eval(b)?.div_euclid(*k),
            Dim::CeilDiv(e, k) => -((-e.eval(b)?).div_euclid(*k)),
            Dim::Mul(e, k) => e.eval(b)?.checked_mul(*k)?,
        })
    }
    /// Replaces bound symbols by their values and simplifies.
    pub fn substitute(&self, b: &Bindings) -> Dim {
        match self {
            Dim::Lit(_) => self.clone(),
            Dim::Sym(s) => match b.get(s).and_then(|v| i64::try_from(*v).ok()) {
                Some(v) => Dim::Lit(v),
                None => self.clone(),
            },
            Dim::Add(e, k) => e.substitute(b).add(*k),
            Dim::FloorDiv(e, k) => e.substitute(b).floor_div(*k),
            Dim::CeilDiv(e, k) => e.substitute(b).ceil_div(*k),
            Dim::Mul(e, k) => e.substitute(b).mul(*k),
        }
    }
    /// The nesting depth of the expression: 0 for a number or a symbol.
    pub fn depth(&self) -> usize {
        match self {
            Dim::Lit(_) | Dim::Sym(_) => 0,
            Dim::Add(e, _) | Dim::FloorDiv(e, _) | Dim::CeilDiv(e, _) | Dim::Mul(e, _) => {
                e.depth() + 1
            }
        }
    }
    /// The symbol this size depends on, if any.
    pub fn symbol(&self) -> Option<&str> {
        match self {
            Dim::Lit(_) => None,
            Dim::Sym(s) => Some(s),
            Dim::Add(e, _) | Dim::FloorDiv(e, _) | Dim::CeilDiv(e, _) | Dim::Mul(e, _) => {
                e.symbol()
            }
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Lit(v) => write!(f, "{v}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Add(e, k) if *k < 0 => write!(f, "{e}-{}", k.unsigned_abs()),
            Dim::Add(e, k) => write!(f, "{e}+{k}"),
            Dim::FloorDiv(e, k) => match **e {
                Dim::Add(..) => write!(f, "({e})/{k}"),
                _ => write!(f, "{e}/{k}"),
            },
            Dim::CeilDiv(e, k) => write!(f, "ceil({e}/{k})"),
            Dim::Mul(e, k) => match **e {
                Dim::Add(..) => write!(f, "({e})*{k}"),
                _ => write!(f, "{e}*{k}"),
            },
        }
    }
}

/// The shape of one image's tensor: `[C, H, W]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Channels (always known).
    pub c: usize,
    /// Height.
    pub h: Dim,
    /// Width.
    pub w: Dim,
}

impl Shape {
    /// A fully known shape.
    pub fn known(c: usize, h: usize, w: usize) -> Shape {
        Shape {
            c,
            h: Dim::Lit(h as i64),
            w: Dim::Lit(w as i64),
        }
    }
    /// `(H, W)` when both are known and positive.
    pub fn hw(&self) -> Option<(usize, usize)> {
        let h = usize::try_from(self.h.known()?).ok()?;
        let w = usize::try_from(self.w.known()?).ok()?;
        Some((h, w))
    }
    /// The shape with bound symbols replaced.
    pub fn substitute(&self, b: &Bindings) -> Shape {
        Shape {
            c: self.c,
            h: self.h.substitute(b),
            w: self.w.substitute(b),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{},{},{}]", self.c, self.h, self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Dim {
        Dim::Sym("H".into())
    }

    #[test]
    fn simplifies_and_prints() {
        assert_eq!(h().add(2).add(-2), h());
        assert_eq!(h().floor_div(1), h());
        assert_eq!(h().add(-3).floor_div(2).add(1).to_string(), "(H-3)/2+1");
        assert_eq!(h().ceil_div(2).to_string(), "ceil(H/2)");
        assert_eq!(Dim::Lit(7).ceil_div(2), Dim::Lit(4));
        assert_eq!(Dim::Lit(-1).floor_div(2), Dim::Lit(-1));
    }

    #[test]
    fn evaluates_under_bindings() {
        let mut b = Bindings::new();
        b.insert("H".into(), 13);
        assert_eq!(h().add(-3).floor_div(2).add(1).eval(&b), Some(6));
        assert_eq!(h().ceil_div(4).eval(&b), Some(4));
        assert_eq!(h().ceil_div(4).substitute(&b), Dim::Lit(4));
        assert_eq!(Dim::Sym("W".into()).eval(&b), None);
    }
}
