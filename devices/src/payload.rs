//! Simulated telemetry payloads: JSON, CBOR, or raw bytes of a fixed size.

use serde::Serialize;

/// Payload encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A JSON object.
    Json,
    /// The same object in CBOR.
    Cbor,
    /// `--payload-bytes` bytes of filler (benchmarks).
    Raw,
}

/// One reading of a simulated sensor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Reading<'a> {
    pub device: &'a str,
    pub seq: u64,
    pub ts: i64,
    pub temperature: f64,
    pub humidity: f64,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub pad: &'a str,
}

/// Errors encoding a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("CBOR: {0}")]
    Cbor(String),
}

/// Builds payload `seq` of `device` in `format`, at least `min_bytes` long for JSON/CBOR (padded)
/// and exactly that long for raw.
pub fn build(
    format: Format,
    device: &str,
    seq: u64,
    ts: i64,
    min_bytes: usize,
) -> Result<Vec<u8>, PayloadError> {
    if format == Format::Raw {
        let mut v = format!("{device}:{seq}:").into_bytes();
        v.resize(min_bytes.max(v.len()), b'x');
        return Ok(v);
    }
    // A deterministic wave, so values look like sensor data.
    let phase = (seq as f64) / 10.0;
    let mut reading = Reading {
        device,
        seq,
        ts,
        temperature: 20.0 + 5.0 * phase.sin(),
        humidity: 50.0 + 10.0 * phase.cos(),
        pad: "",
    };
    let encode = |r: &Reading| -> Result<Vec<u8>, PayloadError> {
        match format {
            Format::Cbor => {
                let mut out = Vec::new();
                ciborium::into_writer(r, &mut out)
                    .map_err(|e| PayloadError::Cbor(e.to_string()))?;
                Ok(out)
            }
            _ => Ok(serde_json::to_vec(r)?),
        }
    };
    let first = encode(&reading)?;
    if first.len() >= min_bytes {
        return Ok(first);
    }
    let pad = "x".repeat(min_bytes - first.len());
    reading.pad = &pad;
    encode(&reading)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let j = build(Format::Json, "d1", 3, 1000, 0).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&j).unwrap();
        assert_eq!(v["device"], "d1");
        assert_eq!(v["seq"], 3);
        let c = build(Format::Cbor, "d1", 3, 1000, 0).unwrap();
        let v: serde_json::Value = ciborium::from_reader(&c[..]).unwrap();
        assert_eq!(v["seq"], 3);
        assert!(build(Format::Json, "d1", 3, 1000, 200).unwrap().len() >= 200);
        assert_eq!(build(Format::Raw, "d1", 3, 1000, 100).unwrap().len(), 100);
    }
}
