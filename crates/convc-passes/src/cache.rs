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
//!   128-bit hashes.
//!
//! Small forms are not cached ([`MIN_WORK`]): factoring them costs less than hashing.

use std::collections::HashMap;
use std::hash::Hasher as _;
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
    /// The key of `form` of `weights` with geometry `geom`.
    pub fn new(form: Form, geom: Geom, weights: &[f32]) -> Key {
        let hash = (geom.svd_work(form) >= MIN_WORK).then(|| hash128(weights));
        Key { form, geom, hash }
    }
}

/// Two independent 64-bit hashes of the weights' bits (SipHash with different leading words).
fn hash128(weights: &[f32]) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    let mut b = std::collections::hash_map::DefaultHasher::new();
    a.write_u64(0x9e37_79b9_7f4a_7c15);
    b.write_u64(0xc2b2_ae3d_27d4_eb4f);
    a.write_usize(weights.len());
    b.write_usize(weights.len());
    for chunk in weights.chunks(2) {
        let lo = chunk[0].to_bits() as u64;
        let hi = chunk.get(1).map_or(0, |w| w.to_bits() as u64);
        let word = lo | (hi << 32);
        a.write_u64(word);
        b.write_u64(word.rotate_left(17));
    }
    ((a.finish() as u128) << 64) | b.finish() as u128
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
