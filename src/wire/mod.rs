//! Typed wire formats shared by the server (`crate::service`) and the bench (`crate::bench`):
//! what each API family writes, field for field and in MindIE's key order, and what the bench
//! reads back from any server that speaks it. Every type also describes itself as a JSON
//! Schema, from which the server's `/openapi.json` is assembled (`service::openapi`).
pub mod error;
pub mod mindie;
pub mod models;
pub mod openai;
pub mod tgi;
pub mod triton;
pub mod vllm;

/// A field that is absent (`None`), `null` (`Some(None)`) or a value.
pub(crate) mod present_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}
