//! The only bridge between the neutral [`RdbValue`] and ringkv's in-memory
//! [`Value`]. The collection representations in `crate::types` are still
//! evolving; when they change, only this file needs adapting.

use super::rdb::quicklist_nodes;
use super::{Encoding, RdbObject, RdbValue, Thresholds};
use crate::server::resp::parse_i64;
use crate::shard::value::{SmallBytes, Value};
use crate::types::{hash::HashValue, list::ListValue, set::SetValue, zset::ZSetValue};
use std::collections::VecDeque;

/// The neutral form of `v` and the encoding it should be written with: the
/// one it has in memory, as DUMP writes it in Redis. Sorted sets have no
/// big in-memory form yet, so theirs is chosen from the thresholds `t`.
pub fn to_rdb(v: &Value, t: &Thresholds) -> (RdbValue, Encoding) {
    let b = |s: &SmallBytes| s.as_slice().to_vec();
    match v {
        Value::Str(s) => (RdbValue::String(b(s)), Encoding::Raw),
        Value::Int(n) => (
            RdbValue::String(itoa::Buffer::new().format(*n).as_bytes().to_vec()),
            Encoding::Raw,
        ),
        Value::Hash(h) => match &**h {
            HashValue::Listpack(p) => (
                RdbValue::Hash(p.iter().map(|(f, x)| (b(f), b(x))).collect()),
                Encoding::Listpack,
            ),
            HashValue::Table(t) => (
                RdbValue::Hash(t.iter().map(|(f, x)| (f.to_vec(), b(x))).collect()),
                Encoding::Table,
            ),
        },
        Value::List(l) => {
            let items = match &**l {
                ListValue::Listpack(v) => v.iter().map(b).collect(),
                ListValue::Quicklist(d) => d.iter().map(b).collect(),
            };
            (RdbValue::List(items), Encoding::Quicklist)
        }
        Value::Set(s) => match &**s {
            SetValue::Intset(v) => (
                RdbValue::Set(
                    v.iter()
                        .map(|n| itoa::Buffer::new().format(*n).as_bytes().to_vec())
                        .collect(),
                ),
                Encoding::Intset,
            ),
            SetValue::Listpack(v) => (RdbValue::Set(v.iter().map(b).collect()), Encoding::Listpack),
            SetValue::Table(t) => (
                RdbValue::Set(t.iter().map(|m| m.to_vec()).collect()),
                Encoding::Table,
            ),
        },
        Value::ZSet(z) => match &**z {
            ZSetValue::Listpack(v) => {
                let z = RdbValue::ZSet(v.iter().map(|(m, s)| (b(m), *s)).collect());
                let enc = Encoding::choose(&z, t);
                (z, enc)
            }
        },
    }
}

/// Builds the in-memory value of a loaded object. Hashes keep the encoding
/// Redis 7.0 gives them on load; lists and sets follow ringkv's 7.2-style
/// compact forms (a list that fits one listpack node, a small non-integer
/// set) under the thresholds `t`.
pub fn from_rdb(obj: RdbObject, t: &Thresholds) -> Value {
    let sb = SmallBytes::from_vec;
    match obj.value {
        RdbValue::String(s) => Value::from_bytes(&s),
        RdbValue::List(items) => {
            let one_node = quicklist_nodes(&items, t.list_max_listpack_size).len() <= 1;
            let l = if one_node {
                ListValue::Listpack(items.into_iter().map(sb).collect())
            } else {
                ListValue::Quicklist(items.into_iter().map(sb).collect::<VecDeque<_>>())
            };
            Value::List(Box::new(l))
        }
        RdbValue::Set(members) => {
            let s = if obj.encoding == Encoding::Intset {
                let mut ints: Vec<i64> = members.iter().filter_map(|m| parse_i64(m)).collect();
                ints.sort_unstable();
                SetValue::Intset(ints)
            } else if members.len() <= t.set_max_listpack_entries
                && members.iter().all(|m| m.len() <= t.set_max_listpack_value)
            {
                SetValue::Listpack(members.into_iter().map(sb).collect())
            } else {
                SetValue::Table(members.into_iter().map(Vec::into_boxed_slice).collect())
            };
            Value::Set(Box::new(s))
        }
        RdbValue::ZSet(mut members) => {
            members.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            Value::ZSet(Box::new(ZSetValue::Listpack(
                members.into_iter().map(|(m, s)| (sb(m), s)).collect(),
            )))
        }
        RdbValue::Hash(pairs) => {
            let h = if obj.encoding == Encoding::Listpack {
                HashValue::Listpack(pairs.into_iter().map(|(f, x)| (sb(f), sb(x))).collect())
            } else {
                HashValue::Table(
                    pairs
                        .into_iter()
                        .map(|(f, x)| (f.into_boxed_slice(), sb(x)))
                        .collect(),
                )
            };
            Value::Hash(Box::new(h))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_through_value() {
        let t = Thresholds::default();
        let cases = vec![
            (RdbValue::String(b"hello".to_vec()), Encoding::Raw),
            (
                RdbValue::List(vec![b"a".to_vec(), b"1".to_vec()]),
                Encoding::Quicklist,
            ),
            (
                RdbValue::Set(vec![b"1".to_vec(), b"5".to_vec()]),
                Encoding::Intset,
            ),
            (RdbValue::Set(vec![b"x".to_vec()]), Encoding::Table),
            (
                RdbValue::ZSet(vec![(b"a".to_vec(), 1.5), (b"b".to_vec(), -2.0)]),
                Encoding::Listpack,
            ),
            (
                RdbValue::Hash(vec![(b"f".to_vec(), b"v".to_vec())]),
                Encoding::Listpack,
            ),
        ];
        for (value, encoding) in cases {
            let v = from_rdb(
                RdbObject {
                    value: value.clone(),
                    encoding,
                },
                &t,
            );
            let (back, _) = to_rdb(&v, &t);
            match (&value, &back) {
                (RdbValue::ZSet(a), RdbValue::ZSet(b)) => {
                    let mut a = a.clone();
                    a.sort_by(|x, y| x.1.total_cmp(&y.1));
                    assert_eq!(&a, b);
                }
                _ => assert_eq!(value, back),
            }
        }
        assert_eq!(
            from_rdb(
                RdbObject {
                    value: RdbValue::String(b"42".to_vec()),
                    encoding: Encoding::Raw
                },
                &t
            ),
            Value::Int(42)
        );
    }
}
