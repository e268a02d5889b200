//! One cached entity at one store revision, in one of two forms.
//!
//! - **Typed**: the model value, shared (`Arc<T>`), with its v0.3 item
//!   (`{"metadata", "entity"}`) encoded by the first request that serves it
//!   and kept.
//! - **Packed**: the v0.3 item alone, LZ4-compressed against a dictionary
//!   (the first item the cache packed: items share their field names and
//!   most of their ARNs, so each keeps little more than what is its own),
//!   encoded when the entry was made. The typed value is decoded from it on
//!   demand ([`Entry::value`]), and requests copy the item uncompressed
//!   from a copy kept within the cache's budget of plain items
//!   ([`HotItems`]), or decompress it when the budget is spent.
//!
//! A task is packed when its item decodes back to the very same task
//! (checked when it is packed), which is what ECS reports for a task in
//! practice; any other task, and every instance, stays typed. Sizes are in
//! `benches/RESULTS.md` (issue 17).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::store::Revision;

/// A cached entity with the store revision of its last write, and its
/// v0.3 item (`{"metadata", "entity"}`) for that revision, encoded once
/// (see the module docs for its two forms).
///
/// Entries are recreated on every write, so the item belongs to one
/// revision of the entity. Cloning an entry shares it (one reference
/// count); it copies nothing.
#[derive(Debug)]
pub struct Entry<T> {
    form: Arc<Form<T>>,
    /// The store revision of its last write (`metadata.entityVersion`).
    /// The item kept for the entry names it: an entry for another revision
    /// is a new entry, never a changed one.
    pub revision: Revision,
}

#[derive(Debug)]
enum Form<T> {
    Typed {
        value: Arc<T>,
        /// The item, once a request has encoded it.
        item: OnceLock<Bytes>,
    },
    Packed(Packed),
}

/// A v0.3 item, compressed, and its uncompressed copy while the budget
/// keeps one.
#[derive(Debug)]
struct Packed {
    compressed: Box<[u8]>,
    /// The item's length uncompressed.
    len: u32,
    plain: OnceLock<Bytes>,
    packing: Arc<Packing>,
}

impl Drop for Packed {
    fn drop(&mut self) {
        if let Some(plain) = self.plain.get() {
            self.packing.hot.release(plain.len());
        }
    }
}

impl Packed {
    /// Decompresses the item into `out` (its exact length).
    fn unpack_into(&self, out: &mut [u8]) -> bool {
        let dict = self.packing.dict.get().map_or(&[][..], |d| &d[..]);
        lz4_flex::block::decompress_into_with_dict(&self.compressed, out, dict)
            .is_ok_and(|n| n == out.len())
    }
}

/// What a cache's packed entries share: the compression dictionary (set by
/// the first entry packed) and the budget of plain items.
#[derive(Debug)]
pub(crate) struct Packing {
    dict: OnceLock<Box<[u8]>>,
    pub(crate) hot: HotItems,
}

impl Packing {
    /// Packing with a budget of `hot_items` bytes of plain items.
    pub(crate) fn new(hot_items: usize) -> Self {
        Packing {
            dict: OnceLock::new(),
            hot: HotItems::new(hot_items),
        }
    }
}

/// The budget of uncompressed items a cache keeps for its packed entries
/// (bytes): the first requests to serve packed entries keep their plain
/// items until the budget is spent, and an entry gives its share back when
/// it is dropped. Lists of entries with a kept item are copies; the rest
/// are decompressed per request.
#[derive(Debug, Default)]
pub struct HotItems {
    limit: usize,
    used: AtomicUsize,
}

impl HotItems {
    /// A budget of `limit` bytes.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        HotItems {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes of plain items kept now.
    #[must_use]
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget, in bytes.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// The `entity` of an item (its `metadata` is skipped).
#[derive(serde::Deserialize)]
struct ItemEntity<T> {
    entity: T,
}

/// Decodes the entity of an item.
fn decode_item<T: DeserializeOwned>(item: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice::<ItemEntity<T>>(item).map(|i| i.entity)
}

impl<T> Entry<T> {
    /// A typed entry for `value` written at `revision`, its item not yet
    /// encoded.
    pub fn new(value: Arc<T>, revision: Revision) -> Self {
        Entry {
            form: Arc::new(Form::Typed {
                value,
                item: OnceLock::new(),
            }),
            revision,
        }
    }

    /// An entry for `value` written at `revision`, whose v0.3 item is
    /// `item`: packed when the item decodes back to `value` exactly,
    /// otherwise typed (the item is then dropped and encoded again when
    /// first served).
    pub(crate) fn pack(
        value: Arc<T>,
        revision: Revision,
        item: &[u8],
        packing: &Arc<Packing>,
    ) -> Self
    where
        T: DeserializeOwned + PartialEq,
    {
        let exact = decode_item::<T>(item).is_ok_and(|back| back == *value);
        let Ok(len) = u32::try_from(item.len()) else {
            return Entry::new(value, revision);
        };
        if !exact {
            return Entry::new(value, revision);
        }
        let dict = packing.dict.get_or_init(|| Box::from(item));
        // Compressed into a scratch buffer of the worst-case size, then
        // copied to one of the exact size.
        let mut scratch = vec![0; lz4_flex::block::get_maximum_output_size(item.len())];
        let compressed: Box<[u8]> =
            match lz4_flex::block::compress_into_with_dict(item, &mut scratch, dict) {
                Ok(n) => Box::from(&scratch[..n]),
                Err(_) => return Entry::new(value, revision),
            };
        Entry {
            form: Arc::new(Form::Packed(Packed {
                compressed,
                len,
                plain: OnceLock::new(),
                packing: Arc::clone(packing),
            })),
            revision,
        }
    }

    /// Whether the entry holds its item packed rather than its typed value.
    #[must_use]
    pub fn is_packed(&self) -> bool {
        matches!(*self.form, Form::Packed(_))
    }

    /// The size of the packed item, compressed (a packed entry).
    #[cfg(test)]
    pub(crate) fn packed_len(&self) -> Option<usize> {
        match &*self.form {
            Form::Typed { .. } => None,
            Form::Packed(p) => Some(p.compressed.len()),
        }
    }

    /// The typed value, when the entry holds it (a typed entry).
    #[must_use]
    pub fn typed(&self) -> Option<&Arc<T>> {
        match &*self.form {
            Form::Typed { value, .. } => Some(value),
            Form::Packed(_) => None,
        }
    }

    /// Appends the entry's item to `out`: copied when kept; for the first
    /// request that serves a typed entry, encoded in place by `encode` and
    /// kept; for a packed entry without a kept copy, decompressed in place
    /// (and kept if the budget allows). Every caller must pass the same
    /// encoder (the HTTP API's v0.3 item, which names the entry's
    /// `revision`).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn write_item(&self, out: &mut Vec<u8>, encode: impl FnOnce(&T, &mut Vec<u8>)) {
        let start = out.len();
        match &*self.form {
            Form::Typed { value, item } => {
                let mut here = false;
                let kept = item.get_or_init(|| {
                    encode(value, out);
                    here = true;
                    Bytes::copy_from_slice(&out[start..])
                });
                if !here {
                    out.extend_from_slice(kept);
                }
            }
            Form::Packed(p) => {
                if let Some(plain) = p.plain.get() {
                    out.extend_from_slice(plain);
                    return;
                }
                // Packed by this process, so it decompresses; were it not
                // to, the entity would be `{}` rather than a broken body.
                let len = p.len as usize;
                out.resize(start + len, 0);
                if !p.unpack_into(&mut out[start..]) {
                    out.truncate(start);
                    out.extend_from_slice(b"{}");
                    return;
                }
                let hot = &p.packing.hot;
                if hot.take(len) && p.plain.set(Bytes::copy_from_slice(&out[start..])).is_err() {
                    hot.release(len);
                }
            }
        }
    }
}

impl<T: DeserializeOwned> Entry<T> {
    /// The entity: shared for a typed entry, decoded from its item for a
    /// packed one (each call decodes; keep the `Arc` rather than calling
    /// again).
    ///
    /// # Panics
    ///
    /// Never in practice: an entry is packed only after its item was
    /// decoded back to the same value, and the item does not change.
    #[must_use]
    pub fn value(&self) -> Arc<T> {
        match &*self.form {
            Form::Typed { value, .. } => Arc::clone(value),
            Form::Packed(p) => {
                let mut unpacked = Vec::new();
                let item: &[u8] = match p.plain.get() {
                    Some(kept) => kept,
                    None => {
                        unpacked.resize(p.len as usize, 0);
                        if !p.unpack_into(&mut unpacked) {
                            unpacked.clear();
                        }
                        &unpacked
                    }
                };
                #[allow(clippy::expect_used)]
                Arc::new(decode_item(item).expect("a packed item decodes: checked when packed"))
            }
        }
    }
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        Entry {
            form: Arc::clone(&self.form),
            revision: self.revision,
        }
    }
}
