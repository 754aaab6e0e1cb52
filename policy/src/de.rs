//! Deserialization helpers that check a value *inside* its visitor, so that a refused value is
//! reported at its own line and column. (An error raised after the value was read, as with
//! serde's `try_from`, is reported at the enclosing mapping or list.)

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A `T` read from a YAML or JSON string with `T::from_str`.
pub(crate) struct Parsed<T>(pub T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrVisitor<T>(PhantomData<T>);
        impl<T> Visitor<'_> for StrVisitor<T>
        where
            T: FromStr,
            T::Err: fmt::Display,
        {
            type Value = Parsed<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Parsed<T>, E> {
                v.parse().map(Parsed).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(StrVisitor(PhantomData))
    }
}

/// Reads a mapping as `F`, then turns it into a `T` with `check`.
pub(crate) fn checked_map<'de, D, F, T>(
    deserializer: D,
    expecting: &'static str,
    check: fn(F) -> Result<T, &'static str>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: Deserialize<'de>,
{
    struct MapVisitor<F, T> {
        expecting: &'static str,
        check: fn(F) -> Result<T, &'static str>,
    }
    impl<'de, F: Deserialize<'de>, T> Visitor<'de> for MapVisitor<F, T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let fields = F::deserialize(MapAccessDeserializer::new(map))?;
            (self.check)(fields).map_err(de::Error::custom)
        }
    }
    deserializer.deserialize_map(MapVisitor { expecting, check })
}

/// A list that must not be empty; `null` is `None`.
pub(crate) fn non_empty_list<'de, D, T>(
    deserializer: D,
    if_empty: &'static str,
) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ListVisitor<T> {
        if_empty: &'static str,
        item: PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let items = Vec::<T>::deserialize(SeqAccessDeserializer::new(seq))?;
            if items.is_empty() {
                return Err(de::Error::custom(self.if_empty));
            }
            Ok(Some(items))
        }
    }
    deserializer.deserialize_option(ListVisitor {
        if_empty,
        item: PhantomData,
    })
}

/// A mapping whose keys must be unique (YAML would let the last one win silently); `null` is
/// empty.
pub(crate) fn unique_keys<'de, D, K, V>(deserializer: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    struct UniqueVisitor<K, V>(PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for UniqueVisitor<K, V>
    where
        K: Deserialize<'de> + Ord + fmt::Display,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut entries = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<K, V>()? {
                if entries.contains_key(&key) {
                    return Err(de::Error::custom(format!("key \"{key}\" appears twice")));
                }
                entries.insert(key, value);
            }
            Ok(entries)
        }
    }
    deserializer.deserialize_option(UniqueVisitor(PhantomData))
}
