//! Reference models: what every op of a key-value structure must return.
//!
//! [`OrderedModel`] (a `BTreeMap` in [`crate::protocol::key_order`]) stands for the list, the
//! red-black tree and the skip list, [`HashModel`] for the hash map, [`LruModel`] for the LRU cache.
//! [`Model::apply`] computes the expected op from the op sent; [`check_batch`] compares a whole
//! batch the program processed with the model.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::Structure;
use crate::protocol::{
    ABSENT, FOUND, INSERTED, Key, LRU_CAPACITY, Op, OpKind, REMOVED, REPLACED, Value, key_order,
};

/// A reference model of a key-value structure.
pub trait Model {
    /// Update: 1 inserted, 2 replaced.
    fn update(&mut self, key: &Key, value: &Value) -> i64;
    /// Lookup: the value if present.
    fn lookup(&mut self, key: &Key) -> Option<Value>;
    /// Delete: 1 removed, 0 absent.
    fn delete(&mut self, key: &Key) -> i64;
    /// Number of keys held.
    fn len(&self) -> usize;

    /// Whether the model holds no key.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The op as the structure must leave it: `result` set, and `value` replaced by the stored
    /// one for a found lookup.
    fn apply(&mut self, kind: OpKind, op: &Op) -> Op {
        let mut out = *op;
        out.result = match kind {
            OpKind::Update => self.update(&op.key, &op.value),
            OpKind::Lookup => match self.lookup(&op.key) {
                Some(v) => {
                    out.value = v;
                    FOUND
                }
                None => ABSENT,
            },
            OpKind::Delete => self.delete(&op.key),
        };
        out
    }
}

/// The exact model of `structure`, or `None` for the sketches (approximate counts).
pub fn for_structure(structure: Structure) -> Option<Box<dyn Model + Send>> {
    match structure {
        Structure::List | Structure::Rbtree | Structure::Skiplist => {
            Some(Box::new(OrderedModel::default()))
        }
        Structure::Hash => Some(Box::new(HashModel::default())),
        Structure::Lru => Some(Box::new(LruModel::new(LRU_CAPACITY))),
        Structure::Countsketch | Structure::Countmin => None,
    }
}

/// A key in the structures' order ([`key_order`]), for the `BTreeMap` of [`OrderedModel`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OrderedKey(pub Key);

impl PartialOrd for OrderedKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        key_order(&self.0, &other.0)
    }
}

/// The storage of an exact key-value model: a map from keys to values.
pub trait Store: Default {
    /// Stores `value` under `key`; whether a value was replaced.
    fn put(&mut self, key: &Key, value: &Value) -> bool;
    /// The value stored under `key`.
    fn get(&self, key: &Key) -> Option<Value>;
    /// Removes `key`; whether it was present.
    fn take(&mut self, key: &Key) -> bool;
    /// Number of keys stored.
    fn count(&self) -> usize;
}

impl Store for HashMap<Key, Value> {
    fn put(&mut self, key: &Key, value: &Value) -> bool {
        self.insert(*key, *value).is_some()
    }
    fn get(&self, key: &Key) -> Option<Value> {
        HashMap::get(self, key).copied()
    }
    fn take(&mut self, key: &Key) -> bool {
        self.remove(key).is_some()
    }
    fn count(&self) -> usize {
        self.len()
    }
}

/// Keys in byte order.
impl Store for BTreeMap<Key, Value> {
    fn put(&mut self, key: &Key, value: &Value) -> bool {
        self.insert(*key, *value).is_some()
    }
    fn get(&self, key: &Key) -> Option<Value> {
        BTreeMap::get(self, key).copied()
    }
    fn take(&mut self, key: &Key) -> bool {
        self.remove(key).is_some()
    }
    fn count(&self) -> usize {
        self.len()
    }
}

/// Keys in [`key_order`].
impl Store for BTreeMap<OrderedKey, Value> {
    fn put(&mut self, key: &Key, value: &Value) -> bool {
        self.insert(OrderedKey(*key), *value).is_some()
    }
    fn get(&self, key: &Key) -> Option<Value> {
        BTreeMap::get(self, &OrderedKey(*key)).copied()
    }
    fn take(&mut self, key: &Key) -> bool {
        self.remove(&OrderedKey(*key)).is_some()
    }
    fn count(&self) -> usize {
        self.len()
    }
}

/// A map model: updates insert or replace, deletes remove, nothing is ever evicted.
#[derive(Default)]
pub struct MapModel<S> {
    map: S,
}

impl<S: Store> Model for MapModel<S> {
    fn update(&mut self, key: &Key, value: &Value) -> i64 {
        if self.map.put(key, value) {
            REPLACED
        } else {
            INSERTED
        }
    }
    fn lookup(&mut self, key: &Key) -> Option<Value> {
        self.map.get(key)
    }
    fn delete(&mut self, key: &Key) -> i64 {
        if self.map.take(key) { REMOVED } else { ABSENT }
    }
    fn len(&self) -> usize {
        self.map.count()
    }
}

/// Ordered map model (list, red-black tree, skip list), keys in [`key_order`].
pub type OrderedModel = MapModel<BTreeMap<OrderedKey, Value>>;

impl OrderedModel {
    /// The keys in the structures' order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.map.keys().map(|k| &k.0)
    }
}

/// Hash map model.
pub type HashModel = MapModel<HashMap<Key, Value>>;

/// A map model in byte order of the keys ([`crate::model_trees::TreeModel`]).
impl MapModel<BTreeMap<Key, Value>> {
    /// The keys in byte order (the order of an in-order walk of the tree).
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.map.keys()
    }
}

/// LRU cache model: at most `capacity` keys; an update (insert or replace) and a found lookup
/// make the key the most recently used; inserting into a full cache first evicts the least
/// recently used key.
pub struct LruModel {
    capacity: usize,
    /// key -> (value, last use).
    entries: HashMap<Key, (Value, u64)>,
    /// last use -> key, oldest first.
    by_age: BTreeMap<u64, Key>,
    clock: u64,
}

impl LruModel {
    /// An empty cache of `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        LruModel {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            clock: 0,
        }
    }

    /// The cache's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn touch(&mut self, key: &Key) {
        self.clock += 1;
        let now = self.clock;
        if let Some((_, age)) = self.entries.get_mut(key) {
            self.by_age.remove(age);
            *age = now;
            self.by_age.insert(now, *key);
        }
    }
}

impl Model for LruModel {
    fn update(&mut self, key: &Key, value: &Value) -> i64 {
        if let Some((v, _)) = self.entries.get_mut(key) {
            *v = *value;
            self.touch(key);
            return REPLACED;
        }
        if self.entries.len() >= self.capacity
            && let Some((_, oldest)) = self.by_age.pop_first()
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(*key, (*value, 0));
        self.touch(key);
        INSERTED
    }
    fn lookup(&mut self, key: &Key) -> Option<Value> {
        let value = self.entries.get(key).map(|(v, _)| *v)?;
        self.touch(key);
        Some(value)
    }
    fn delete(&mut self, key: &Key) -> i64 {
        match self.entries.remove(key) {
            Some((_, age)) => {
                self.by_age.remove(&age);
                REMOVED
            }
            None => ABSENT,
        }
    }
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The first difference between what a structure returned and what its model expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The program.
    pub kind: OpKind,
    /// Index of the op in its batch.
    pub index: usize,
    /// The op as the model expects it.
    pub expected: Op,
    /// The op as the structure left it.
    pub actual: Op,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} op {} (key {:02x?}): expected result {}, got {}",
            self.kind.program(),
            self.index,
            &self.expected.key[..8],
            self.expected.result,
            self.actual.result
        )?;
        if self.expected.value != self.actual.value {
            write!(f, "; values differ")?;
        }
        Ok(())
    }
}

impl std::error::Error for Mismatch {}

/// Runs the ops `sent` through `model` in order and compares each with the op the structure
/// returned (`returned[i]` for `sent[i]`): the result always, the value for lookups.
pub fn check_batch(
    model: &mut dyn Model,
    kind: OpKind,
    sent: &[Op],
    returned: &[Op],
) -> Result<(), Box<Mismatch>> {
    for (index, (s, actual)) in sent.iter().zip(returned).enumerate() {
        let expected = model.apply(kind, s);
        let value_matters = kind == OpKind::Lookup && expected.result == FOUND;
        if expected.result != actual.result || (value_matters && expected.value != actual.value) {
            return Err(Box::new(Mismatch {
                kind,
                index,
                expected,
                actual: *actual,
            }));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        let mut k = [0u8; 32];
        k[0] = n;
        k
    }

    fn value(n: u8) -> Value {
        [n; 64]
    }

    #[test]
    fn maps_report_insert_replace_remove_absent() {
        let models: [Box<dyn Model>; 2] = [
            Box::new(OrderedModel::default()),
            Box::new(HashModel::default()),
        ];
        for mut m in models {
            assert_eq!(m.update(&key(1), &value(1)), INSERTED);
            assert_eq!(m.update(&key(1), &value(2)), REPLACED);
            assert_eq!(m.lookup(&key(1)), Some(value(2)));
            assert_eq!(m.lookup(&key(2)), None);
            assert_eq!(m.delete(&key(2)), ABSENT);
            assert_eq!(m.delete(&key(1)), REMOVED);
            assert!(m.is_empty());
        }
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut m = LruModel::new(2);
        m.update(&key(1), &value(1));
        m.update(&key(2), &value(2));
        assert!(m.lookup(&key(1)).is_some()); // 2 is now the oldest
        assert_eq!(m.update(&key(3), &value(3)), INSERTED);
        assert_eq!(m.lookup(&key(2)), None);
        assert_eq!(m.len(), 2);
        assert_eq!(m.update(&key(1), &value(9)), REPLACED); // 3 is now the oldest
        m.update(&key(4), &value(4));
        assert_eq!(m.lookup(&key(3)), None);
        assert_eq!(m.lookup(&key(1)), Some(value(9)));
        assert_eq!(m.delete(&key(4)), REMOVED);
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn check_batch_finds_a_wrong_result_and_a_wrong_value() {
        let sent = [Op::new(key(1), value(1))];
        let mut ok = sent;
        ok[0].result = INSERTED;
        assert!(check_batch(&mut HashModel::default(), OpKind::Update, &sent, &ok).is_ok());

        let mut model = HashModel::default();
        model.update(&key(1), &value(1));
        let mut wrong_value = sent;
        wrong_value[0].result = FOUND;
        wrong_value[0].value = value(7);
        let err = check_batch(&mut model, OpKind::Lookup, &sent, &wrong_value).unwrap_err();
        assert_eq!(err.index, 0);
        assert_eq!(err.expected.value, value(1));

        let mut wrong_result = sent;
        wrong_result[0].result = ABSENT;
        assert!(check_batch(&mut model, OpKind::Delete, &sent, &wrong_result).is_err());
    }
}
