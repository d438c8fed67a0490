//! Decisions and factorisations kept per weight hash within a process: the same weights are
//! factored several times (`explain --budget` factors every conv for its tables and again for
//! its options; `run --budget` plans, then runs `decompose` over the chosen network).
//!
//! - **Factorisations** ([`factor`], [`factorization`]): keyed by the form, the geometry and a
//!   128-bit hash of the weights; a hit is used only when its stored weights equal the
//!   weights asked for bit for bit, so a hash collision cannot change a result. At most
//!   [`MAX_BYTES`] are kept (the cache is emptied when a new entry would pass it).
//! - **Proofs** that a form cannot pay ([`ruled_out`]): keyed as above plus the break-even rank
//!   and the tolerance. A collision there could only make a conv stay as written (the screen
//!   never changes numbers), and needs two weight tensors of the same shape with equal
//!   128-bit hashes. The hash is a fast non-cryptographic one (two multiply-rotate chains):
//!   hashing must cost far less than the proof it saves.
//!
//! Small forms are not cached ([`MIN_WORK`]): factoring them costs less than hashing.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::factor::{Factorization, Form, Geom};

/// The least [`Geom::svd_work`] of a form worth caching.
pub const MIN_WORK: u128 = 1 << 22;

/// The most bytes of factorisations kept.
pub const MAX_BYTES: usize = 256 << 20;

/// The most proofs kept (the cache is emptied when full).
pub const MAX_PROOFS: usize = 1 << 16;

/// What identifies one form of one conv's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    form: Form,
    geom: Geom,
    /// `None` when the form is too small to cache.
    hash: Option<u128>,
}

impl Key {
    /// The key of `form` of `weights` with geometry `geom` (hashing the weights each time; see
    /// [`Hashed`] to hash them once for every form).
    pub fn new(form: Form, geom: Geom, weights: &[f32]) -> Key {
        Hashed::new(weights).key(form, geom)
    }
}

/// One conv's weights, hashed at most once (on the first form large enough to cache).
pub struct Hashed<'a> {
    weights: &'a [f32],
    hash: std::cell::OnceCell<u128>,
}

impl<'a> Hashed<'a> {
    /// The weights, not hashed yet.
    pub fn new(weights: &'a [f32]) -> Hashed<'a> {
        Hashed {
            weights,
            hash: std::cell::OnceCell::new(),
        }
    }

    /// The key of `form` of these weights with geometry `geom`.
    pub fn key(&self, form: Form, geom: Geom) -> Key {
        let hash = (geom.svd_work(form) >= MIN_WORK)
            .then(|| *self.hash.get_or_init(|| hash128(self.weights)));
        Key { form, geom, hash }
    }
}

/// Murmur3's 64-bit finaliser.
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Two independent 64-bit multiply-rotate chains over the weights' bits (fast, not
/// cryptographic: see the module docs for why that is enough).
fn hash128(weights: &[f32]) -> u128 {
    const K1: u64 = 0x9e37_79b9_7f4a_7c15;
    const K2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let n = weights.len() as u64;
    let (mut a, mut b) = (K1 ^ n, K2 ^ n.rotate_left(32));
    for chunk in weights.chunks(2) {
        let lo = chunk[0].to_bits() as u64;
        let hi = chunk.get(1).map_or(0, |w| w.to_bits() as u64);
        let word = lo | (hi << 32);
        a = (a ^ word).wrapping_mul(K2).rotate_left(29);
        b = (b.rotate_left(23) ^ word).wrapping_mul(K1).wrapping_add(n);
    }
    ((fmix(a) as u128) << 64) | fmix(b ^ a.rotate_left(7)) as u128
}

#[derive(Default)]
struct Store {
    facts: HashMap<Key, Factorization>,
    bytes: usize,
    proofs: HashMap<(Key, usize, u64), bool>,
}

fn store() -> &'static Mutex<Store> {
    static STORE: OnceLock<Mutex<Store>> = OnceLock::new();
    STORE.get_or_init(Mutex::default)
}

/// Runs `f` on the store; `None` if a panic elsewhere poisoned it (the cache is then skipped).
fn with_store<T>(f: impl FnOnce(&mut Store) -> T) -> Option<T> {
    store().lock().ok().map(|mut s| f(&mut s))
}

/// The cached factorisation of exactly `weights` under `key`, if there is one.
pub fn factorization(key: &Key, weights: &[f32]) -> Option<Factorization> {
    key.hash?;
    with_store(|s| s.facts.get(key).filter(|f| f.has_weights(weights)).cloned()).flatten()
}

/// [`Factorization::new`], through the cache.
pub fn factor(key: &Key, form: Form, geom: Geom, weights: &[f32]) -> Option<Factorization> {
    if let Some(f) = factorization(key, weights) {
        return Some(f);
    }
    let f = Factorization::new(form, geom, weights)?;
    if key.hash.is_some() {
        with_store(|s| {
            let bytes = f.bytes();
            if s.bytes + bytes > MAX_BYTES {
                s.facts.clear();
                s.bytes = 0;
            }
            if bytes <= MAX_BYTES && s.facts.insert(*key, f.clone()).is_none() {
                s.bytes += bytes;
            }
        });
    }
    Some(f)
}

/// Whether the form under `key` is ruled out at break-even rank `k` and tolerance `tol`: the
/// cached answer, else `prove()`'s (then cached).
pub fn ruled_out(key: &Key, k: usize, tol: f64, prove: impl FnOnce() -> bool) -> bool {
    if key.hash.is_none() {
        return prove();
    }
    let id = (*key, k, tol.to_bits());
    if let Some(Some(b)) = with_store(|s| s.proofs.get(&id).copied()) {
        return b;
    }
    let b = prove();
    with_store(|s| {
        if s.proofs.len() >= MAX_PROOFS {
            s.proofs.clear();
        }
        s.proofs.insert(id, b)
    });
    b
}
