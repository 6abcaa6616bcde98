//! Property tests: hash and LRU hash maps against simple models.

mod common;

use std::collections::HashMap;

use common::spec;
use kflex_object::MapType;
use kflex_runtime::maps::{BPF_EXIST, BPF_NOEXIST, MapError, MapOptions, MapTable};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Update(u8, u8, u64),
    Delete(u8),
    Lookup(u8),
    /// Program-side lookup (refreshes LRU recency).
    ProgLookup(u8),
}

fn op() -> impl Strategy<Value = Op> {
    // Few distinct keys so that hits, misses and full maps all happen.
    prop_oneof![
        (0u8..12, any::<u8>(), 0u64..4).prop_map(|(k, v, f)| Op::Update(k, v, f)),
        (0u8..12).prop_map(Op::Delete),
        (0u8..12).prop_map(Op::Lookup),
        (0u8..12).prop_map(Op::ProgLookup),
    ]
}

fn key(k: u8) -> [u8; 4] {
    (k as u32).to_le_bytes()
}

fn value(v: u8) -> [u8; 8] {
    [v; 8]
}

fn table(t: MapType, cap: u32) -> MapTable {
    MapTable::create(&[spec("m", t, 4, 8, cap)], &MapOptions::default()).unwrap()
}

proptest! {
    #[test]
    fn hash_matches_model(cap in 1u32..6, ops in proptest::collection::vec(op(), 1..80)) {
        let t = table(MapType::Hash, cap);
        let mut model: HashMap<u8, u8> = HashMap::new();
        for o in ops {
            match o {
                Op::Update(k, v, flags) => {
                    let want = if flags > BPF_EXIST {
                        Err(MapError::Invalid(String::new()))
                    } else if model.contains_key(&k) {
                        if flags == BPF_NOEXIST { Err(MapError::Exists) } else { Ok(()) }
                    } else if flags == BPF_EXIST {
                        Err(MapError::NotFound)
                    } else if model.len() as u32 >= cap {
                        Err(MapError::Full)
                    } else {
                        Ok(())
                    };
                    let got = t.update(0, &key(k), &value(v), flags);
                    match (&want, &got) {
                        (Err(MapError::Invalid(_)), Err(MapError::Invalid(_))) => {}
                        _ => prop_assert_eq!(&got, &want),
                    }
                    if want.is_ok() {
                        model.insert(k, v);
                    }
                }
                Op::Delete(k) => {
                    let want = if model.remove(&k).is_some() { Ok(()) } else { Err(MapError::NotFound) };
                    prop_assert_eq!(t.delete(0, &key(k)), want);
                }
                Op::Lookup(k) => {
                    prop_assert_eq!(t.lookup(0, &key(k)).unwrap(), model.get(&k).map(|&v| value(v).to_vec()));
                }
                Op::ProgLookup(k) => {
                    prop_assert_eq!(t.prog_lookup(0, &key(k), 0).unwrap().is_some(), model.contains_key(&k));
                }
            }
        }
        let mut keys: Vec<Vec<u8>> = model.keys().map(|&k| key(k).to_vec()).collect();
        keys.sort();
        prop_assert_eq!(t.keys(0).unwrap(), keys);
    }

    #[test]
    fn lru_hash_matches_model(cap in 1u32..6, ops in proptest::collection::vec(op(), 1..80)) {
        let t = table(MapType::LruHash, cap);
        // Model: (key, value), least recently used first.
        let mut model: Vec<(u8, u8)> = Vec::new();
        let pos = |m: &Vec<(u8, u8)>, k: u8| m.iter().position(|e| e.0 == k);
        for o in ops {
            match o {
                Op::Update(k, v, flags) => {
                    let got = t.update(0, &key(k), &value(v), flags);
                    if flags > BPF_EXIST {
                        prop_assert!(matches!(got, Err(MapError::Invalid(_))));
                        continue;
                    }
                    match pos(&model, k) {
                        Some(_) if flags == BPF_NOEXIST => prop_assert_eq!(got, Err(MapError::Exists)),
                        Some(i) => {
                            prop_assert_eq!(got, Ok(()));
                            model.remove(i);
                            model.push((k, v));
                        }
                        None if flags == BPF_EXIST => prop_assert_eq!(got, Err(MapError::NotFound)),
                        None => {
                            prop_assert_eq!(got, Ok(()));
                            if model.len() as u32 >= cap {
                                model.remove(0);
                            }
                            model.push((k, v));
                        }
                    }
                }
                Op::Delete(k) => {
                    let want = match pos(&model, k) {
                        Some(i) => { model.remove(i); Ok(()) }
                        None => Err(MapError::NotFound),
                    };
                    prop_assert_eq!(t.delete(0, &key(k)), want);
                }
                Op::Lookup(k) => {
                    let want = pos(&model, k).map(|i| value(model[i].1).to_vec());
                    prop_assert_eq!(t.lookup(0, &key(k)).unwrap(), want);
                }
                Op::ProgLookup(k) => {
                    let hit = t.prog_lookup(0, &key(k), 0).unwrap().is_some();
                    let i = pos(&model, k);
                    prop_assert_eq!(hit, i.is_some());
                    if let Some(i) = i {
                        let e = model.remove(i);
                        model.push(e);
                    }
                }
            }
        }
        let mut keys: Vec<Vec<u8>> = model.iter().map(|&(k, _)| key(k).to_vec()).collect();
        keys.sort();
        prop_assert_eq!(t.keys(0).unwrap(), keys);
    }
}
