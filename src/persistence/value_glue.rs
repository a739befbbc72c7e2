//! The only bridge between the neutral [`RdbValue`] and ringkv's in-memory
//! [`Value`]. The collection representations in `crate::types` are still
//! evolving; when they change, only this file needs adapting.

use super::{Encoding, RdbObject, RdbValue, Thresholds};
use crate::shard::value::{SmallBytes, Value};
use crate::types::set::SetLimits;
use crate::types::{hash, hash::HashValue, list::ListValue, set::SetValue, zset, zset::ZSetValue};

/// The neutral form of `v` and the encoding it should be written with: the
/// one it has in memory, as DUMP writes it in Redis.
pub fn to_rdb(v: &Value, _t: &Thresholds) -> (RdbValue, Encoding) {
    match v {
        Value::Str(s) => (RdbValue::String(s.to_vec()), Encoding::Raw),
        Value::Int(n) => (
            RdbValue::String(itoa::Buffer::new().format(*n).as_bytes().to_vec()),
            Encoding::Raw,
        ),
        Value::Hash(h) => {
            let pairs = h.iter().map(|(f, x)| (f.to_vec(), x.to_vec())).collect();
            let enc = if h.encoding() == "listpack" {
                Encoding::Listpack
            } else {
                Encoding::Table
            };
            (RdbValue::Hash(pairs), enc)
        }
        Value::List(l) => (
            RdbValue::List(l.iter().map(<[u8]>::to_vec).collect()),
            Encoding::Quicklist,
        ),
        Value::Set(s) => {
            let mut members = Vec::with_capacity(s.len());
            s.for_each(|m| members.push(m.to_vec()));
            let enc = match s.encoding() {
                "intset" => Encoding::Intset,
                "listpack" => Encoding::Listpack,
                _ => Encoding::Table,
            };
            (RdbValue::Set(members), enc)
        }
        Value::ZSet(z) => {
            let members = z.iter().map(|(m, sc)| (m.to_vec(), sc)).collect();
            let enc = if z.encoding() == "listpack" {
                Encoding::Listpack
            } else {
                Encoding::Table
            };
            (RdbValue::ZSet(members), enc)
        }
    }
}

/// Builds the in-memory value of a loaded object with the encoding the
/// loader chose (Redis 7.0's choice on load under the thresholds `t`); lists
/// and sets follow ringkv's 7.2-style compact forms.
pub fn from_rdb(obj: RdbObject, t: &Thresholds) -> Value {
    match obj.value {
        RdbValue::String(s) => Value::from_bytes(&s),
        RdbValue::List(items) => {
            let mut l = ListValue::new();
            l.push(&items, false, t.list_max_listpack_size);
            Value::List(Box::new(l))
        }
        RdbValue::Set(members) => {
            let lim = SetLimits {
                intset_entries: t.set_max_intset_entries,
                listpack_entries: t.set_max_listpack_entries,
                listpack_value: t.set_max_listpack_value,
            };
            let mut s = SetValue::new();
            for m in &members {
                s.add(m, &lim);
            }
            Value::Set(Box::new(s))
        }
        RdbValue::ZSet(mut members) => {
            members.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            let lim = zset::Limits {
                max_entries: t.zset_max_listpack_entries,
                max_value: t.zset_max_listpack_value,
            };
            let entries = members
                .into_iter()
                .map(|(m, sc)| (SmallBytes::from_vec(m), sc))
                .collect();
            Value::ZSet(Box::new(ZSetValue::from_sorted(entries, lim)))
        }
        RdbValue::Hash(pairs) => {
            let lim = hash::Limits {
                max_entries: t.hash_max_listpack_entries,
                max_value: t.hash_max_listpack_value,
            };
            let mut h = HashValue::new();
            for (f, x) in &pairs {
                h.set(f, x, lim);
            }
            if obj.encoding == Encoding::Table && h.encoding() == "listpack" {
                h.convert();
            }
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
