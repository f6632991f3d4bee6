//! Values are stored as postcard bytes (compact, fast, schema-less: the key version guards
//! schema changes), zlib-compressed above a threshold as the seed did.

use std::io::{Read, Write};

use flate2::Compression;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::CacheError;

const RAW: u8 = 0;
const ZLIB: u8 = 1;

/// Encoding settings.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    /// Payloads larger than this many bytes are zlib-compressed.
    pub compress_threshold: usize,
    pub level: u32,
}

impl Default for Codec {
    fn default() -> Self {
        Self {
            compress_threshold: 1024,
            level: 6,
        }
    }
}

/// Upper bound on a decompressed value, so a corrupt or hostile entry cannot exhaust memory.
const MAX_DECOMPRESSED: u64 = 64 * 1024 * 1024;

impl Codec {
    /// Appends the encoded `value` (1 format byte, then the payload) to `out`.
    pub fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CacheError> {
        let raw = postcard::to_allocvec(value).map_err(|e| CacheError::Encode(e.to_string()))?;
        if raw.len() > self.compress_threshold {
            out.push(ZLIB);
            let mut enc = flate2::write::ZlibEncoder::new(out, Compression::new(self.level));
            enc.write_all(&raw)
                .map_err(|e| CacheError::Encode(e.to_string()))?;
            enc.finish()
                .map_err(|e| CacheError::Encode(e.to_string()))?;
        } else {
            out.push(RAW);
            out.extend_from_slice(&raw);
        }
        Ok(())
    }

    /// Appends the uncompressed encoding (the in-process form).
    pub(crate) fn encode_raw_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CacheError> {
        out.push(RAW);
        postcard::to_io(value, out).map_err(|e| CacheError::Encode(e.to_string()))?;
        Ok(())
    }

    /// The compressed form of uncompressed encoded bytes, when they are above the threshold.
    pub(crate) fn compress(&self, encoded: &[u8]) -> Result<Option<Vec<u8>>, CacheError> {
        match encoded.split_first() {
            Some((&RAW, raw)) if raw.len() > self.compress_threshold => {
                let mut out = vec![ZLIB];
                let mut enc =
                    flate2::write::ZlibEncoder::new(&mut out, Compression::new(self.level));
                enc.write_all(raw)
                    .map_err(|e| CacheError::Encode(e.to_string()))?;
                enc.finish()
                    .map_err(|e| CacheError::Encode(e.to_string()))?;
                Ok(Some(out))
            }
            _ => Ok(None),
        }
    }

    /// The uncompressed form of encoded bytes, when they are compressed.
    pub(crate) fn decompress(&self, encoded: &[u8]) -> Result<Option<Vec<u8>>, CacheError> {
        match encoded.split_first() {
            Some((&ZLIB, payload)) => {
                let mut out = vec![RAW];
                flate2::read::ZlibDecoder::new(payload)
                    .take(MAX_DECOMPRESSED)
                    .read_to_end(&mut out)
                    .map_err(|e| CacheError::Decode(e.to_string()))?;
                Ok(Some(out))
            }
            _ => Ok(None),
        }
    }

    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CacheError> {
        let mut out = Vec::new();
        self.encode_into(value, &mut out)?;
        Ok(out)
    }

    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CacheError> {
        match bytes.split_first() {
            Some((&RAW, payload)) => {
                postcard::from_bytes(payload).map_err(|e| CacheError::Decode(e.to_string()))
            }
            Some((&ZLIB, payload)) => {
                let mut raw = Vec::new();
                flate2::read::ZlibDecoder::new(payload)
                    .take(MAX_DECOMPRESSED)
                    .read_to_end(&mut raw)
                    .map_err(|e| CacheError::Decode(e.to_string()))?;
                postcard::from_bytes(&raw).map_err(|e| CacheError::Decode(e.to_string()))
            }
            Some((other, _)) => Err(CacheError::Decode(format!("unknown format byte {other}"))),
            None => Err(CacheError::Decode("empty entry".into())),
        }
    }

    /// Whether encoded bytes were compressed.
    pub fn is_compressed(bytes: &[u8]) -> bool {
        bytes.first() == Some(&ZLIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Album {
        id: u64,
        title: String,
        tags: Vec<String>,
    }

    #[test]
    fn small_values_stay_raw_and_large_ones_are_compressed() {
        let codec = Codec::default();
        let small = Album {
            id: 1,
            title: "x".into(),
            tags: vec![],
        };
        let bytes = codec.encode(&small).unwrap();
        assert!(!Codec::is_compressed(&bytes));
        assert_eq!(codec.decode::<Album>(&bytes).unwrap(), small);

        let large = Album {
            id: 2,
            title: "holiday ".repeat(500),
            tags: vec!["beach".into(); 100],
        };
        let bytes = codec.encode(&large).unwrap();
        assert!(Codec::is_compressed(&bytes));
        assert!(bytes.len() < postcard::to_allocvec(&large).unwrap().len() / 4);
        assert_eq!(codec.decode::<Album>(&bytes).unwrap(), large);
    }

    #[test]
    fn in_process_bytes_stay_raw_and_the_wire_form_round_trips() {
        let codec = Codec::default();
        let large = Album {
            id: 3,
            title: "holiday ".repeat(500),
            tags: vec!["beach".into(); 100],
        };
        let mut raw = Vec::new();
        codec.encode_raw_into(&large, &mut raw).unwrap();
        assert!(!Codec::is_compressed(&raw));
        let wire = codec.compress(&raw).unwrap().expect("above the threshold");
        assert!(Codec::is_compressed(&wire) && wire.len() < raw.len() / 4);
        assert_eq!(codec.decompress(&wire).unwrap().as_deref(), Some(&raw[..]));
        assert_eq!(
            codec.decompress(&raw).unwrap(),
            None,
            "raw bytes stay as they are"
        );
        assert_eq!(codec.decode::<Album>(&raw).unwrap(), large);
        let mut small = Vec::new();
        codec.encode_raw_into(&1u8, &mut small).unwrap();
        assert_eq!(codec.compress(&small).unwrap(), None, "below the threshold");
        assert!(codec.decompress(&[ZLIB, 1, 2, 3]).is_err());
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let codec = Codec::default();
        assert!(codec.decode::<Album>(&[]).is_err());
        assert!(codec.decode::<Album>(&[9, 1, 2]).is_err());
        assert!(codec.decode::<Album>(&[ZLIB, 1, 2, 3]).is_err());
        assert!(codec.decode::<Album>(&[RAW, 0xff]).is_err());
    }
}
