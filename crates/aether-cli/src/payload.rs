//! Payloads as JSON: MessagePack decoded into `serde_json::Value`, anything
//! else shown as base64 and hex with a note (never a panic).

use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::{Value, json};

/// The payload as JSON. A MessagePack value that JSON can hold comes back
/// as is; anything else (not MessagePack, trailing bytes, binary strings,
/// non-string map keys) as `{"undecoded": {"base64", "hex", "note"}}`.
pub(crate) fn to_json(bytes: &[u8]) -> Value {
    match decode(bytes) {
        Ok(value) => value,
        Err(note) => undecoded(bytes, &note),
    }
}

fn decode(bytes: &[u8]) -> Result<Value, String> {
    if bytes.is_empty() {
        return Err("empty payload".to_owned());
    }
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value = Value::deserialize(&mut de)
        .map_err(|e| format!("not MessagePack that JSON can show: {e}"))?;
    let used = de.get_ref().position();
    if used != bytes.len() as u64 {
        return Err(format!(
            "{} bytes after the first MessagePack value",
            bytes.len() as u64 - used
        ));
    }
    Ok(value)
}

/// The JSON shape of bytes that could not be decoded.
pub(crate) fn undecoded(bytes: &[u8], note: &str) -> Value {
    json!({
        "undecoded": {
            "note": note,
            "len": bytes.len(),
            "base64": base64::engine::general_purpose::STANDARD.encode(bytes),
            "hex": hex(bytes),
        }
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messagepack_becomes_json() {
        let bytes = rmp_serde::to_vec_named(&json!({"sku": "book", "qty": 2})).unwrap();
        assert_eq!(to_json(&bytes), json!({"sku": "book", "qty": 2}));
    }

    #[test]
    fn garbage_is_shown_not_fatal() {
        let value = to_json(&[0xc1, 0xff, 0x00]);
        assert_eq!(value["undecoded"]["hex"], "c1ff00");
        assert_eq!(value["undecoded"]["base64"], "wf8A");
        let trailing = to_json(&[0x01, 0x02]);
        assert!(
            trailing["undecoded"]["note"]
                .as_str()
                .unwrap()
                .contains("1 bytes after")
        );
        assert!(to_json(&[]).get("undecoded").is_some());
    }
}
