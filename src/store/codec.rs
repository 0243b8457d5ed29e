//! Stored values: a CRC-32 of the payload, then the payload (postcard). A value
//! that fails its checksum or does not decode is reported as data loss, naming
//! the key, never served.

use serde::de::{DeserializeOwned, DeserializeSeed};
use serde::Serialize;

use crate::error::{Error, Result};

use super::keys::describe_key;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let payload =
        postcard::to_stdvec(value).map_err(|e| Error::Internal(format!("encoding: {e}")))?;
    let mut bytes = Vec::with_capacity(payload.len() + 4);
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    decode_seed(key, bytes, std::marker::PhantomData)
}

/// Decodes through a seed: a value read into another as it is decoded
/// (`Aggregate`'s `AddStored`), say.
pub fn decode_seed<'de, S: DeserializeSeed<'de>>(
    key: &[u8],
    bytes: &'de [u8],
    seed: S,
) -> Result<S::Value> {
    let damaged = |why: &str| {
        let key = describe_key(key);
        tracing::error!(key = %key, why, "stored value is damaged");
        Error::DataLoss(format!("value of key {key} {why}"))
    };
    if bytes.len() < 4 {
        return Err(damaged("is truncated"));
    }
    let (checksum, payload) = bytes.split_at(4);
    if checksum != crc32fast::hash(payload).to_le_bytes() {
        return Err(damaged("fails its checksum"));
    }
    let mut deserializer = postcard::Deserializer::from_bytes(payload);
    seed.deserialize(&mut deserializer)
        .map_err(|_| damaged("does not decode"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_is_data_loss() {
        let mut bytes = encode(&(42u64, String::from("team"))).unwrap();
        assert_eq!(
            decode::<(u64, String)>(b"k", &bytes).unwrap(),
            (42, "team".into())
        );
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(matches!(
            decode::<(u64, String)>(b"k", &bytes),
            Err(Error::DataLoss(_))
        ));
    }
}
