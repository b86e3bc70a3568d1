//! The ground truth as a file: JSON lines, one request per line, raw bytes in base64.
//!
//! `{"conversation":3,"request":0,"client":"10.128.0.3:40123","server":"10.0.2.13:8080",
//!   "vni":1234567,"rebuildable":true,"raw":"R0VUIC8..."}`

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::GenError;
use crate::gen::ConversationTruth;

/// One request of the ground truth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRecord {
    pub conversation: u64,
    pub request: usize,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub vni: u32,
    pub rebuildable: bool,
    #[serde(with = "base64_bytes")]
    pub raw: Vec<u8>,
}

mod base64_bytes {
    use super::{Engine, B64};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Records of one conversation's truth.
pub fn records(t: &ConversationTruth) -> impl Iterator<Item = TruthRecord> + '_ {
    t.requests.iter().enumerate().map(|(i, r)| TruthRecord {
        conversation: t.id,
        request: i,
        client: t.client,
        server: t.server,
        vni: t.vni,
        rebuildable: r.rebuildable,
        raw: r.bytes.clone(),
    })
}

pub struct TruthWriter<W: Write> {
    w: W,
    requests: u64,
}

impl TruthWriter<BufWriter<File>> {
    pub fn create(path: impl AsRef<Path>) -> Result<Self, GenError> {
        Ok(Self::new(BufWriter::new(File::create(path)?)))
    }
}

impl<W: Write> TruthWriter<W> {
    pub fn new(w: W) -> Self {
        Self { w, requests: 0 }
    }

    pub fn write(&mut self, t: &ConversationTruth) -> Result<(), GenError> {
        for rec in records(t) {
            serde_json::to_writer(&mut self.w, &rec).map_err(|e| GenError::Truth(e.to_string()))?;
            self.w.write_all(b"\n")?;
            self.requests += 1;
        }
        Ok(())
    }

    /// Requests written so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    pub fn finish(mut self) -> Result<W, GenError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

pub fn write_truth(path: impl AsRef<Path>, truths: &[ConversationTruth]) -> Result<(), GenError> {
    let mut w = TruthWriter::create(path)?;
    for t in truths {
        w.write(t)?;
    }
    w.finish()?;
    Ok(())
}

pub fn read_truth_from(r: impl BufRead) -> Result<Vec<TruthRecord>, GenError> {
    let mut out = Vec::new();
    for (n, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| GenError::Truth(format!("line {}: {e}", n + 1)))?,
        );
    }
    Ok(out)
}

pub fn read_truth(path: impl AsRef<Path>) -> Result<Vec<TruthRecord>, GenError> {
    read_truth_from(BufReader::new(File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::TruthRequest;

    #[test]
    fn round_trip_keeps_every_byte() {
        let t = ConversationTruth {
            id: 9,
            client: "10.0.0.1:1234".parse().unwrap(),
            server: "[fd00::1]:80".parse().unwrap(),
            vni: 77,
            requests: vec![
                TruthRequest {
                    bytes: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
                    rebuildable: true,
                },
                TruthRequest {
                    bytes: (0..=255u8).collect(),
                    rebuildable: false,
                },
            ],
        };
        let mut buf = Vec::new();
        let mut w = TruthWriter::new(&mut buf);
        w.write(&t).unwrap();
        assert_eq!(w.requests(), 2);
        w.finish().unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with(
            "{\"conversation\":9,\"request\":0,\"client\":\"10.0.0.1:1234\",\"server\":\"[fd00::1]:80\",\"vni\":77,\"rebuildable\":true,\"raw\":\"R0VUIC8gSFRUUC8xLjENCg0K\"}\n"
        ));
        let back = read_truth_from(buf.as_slice()).unwrap();
        assert_eq!(back, records(&t).collect::<Vec<_>>());
        assert!(matches!(
            read_truth_from(&b"{\"nope\":1}\n"[..]),
            Err(GenError::Truth(_))
        ));
    }
}
