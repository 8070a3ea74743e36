//! The few MessagePack forms envelope format 2 uses, written and read by
//! hand: a positional array needs no field names, no serde visitor and no
//! intermediate allocation, and reading borrows strings and the payload from
//! the message. Reading never panics: every length is checked against the
//! bytes that remain, and anything unexpected is a [`WireError`].

/// Why bytes are not the MessagePack form expected at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub(crate) struct WireError {
    pub(crate) what: &'static str,
    pub(crate) at: usize,
}

/// The MessagePack timestamp extension type.
pub(crate) const EXT_TIMESTAMP: i8 = -1;

/// The bytes [`Writer::str`] writes for a string of `len` bytes.
pub(crate) fn str_size(len: usize) -> usize {
    len + match len {
        0..=31 => 1,
        32..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes [`Writer::bin`] writes for `len` bytes.
pub(crate) fn bin_size(len: usize) -> usize {
    len + match len {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes [`Writer::uint`] writes for `v`.
pub(crate) fn uint_size(v: u64) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The bytes [`Writer::map`] (or [`Writer::array`]) writes for `len` entries.
pub(crate) fn map_size(len: u32) -> usize {
    match len {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes [`Writer::timestamp96`] writes.
pub(crate) const TIMESTAMP96_SIZE: usize = 15;

/// Appends MessagePack values to a buffer.
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn array(&mut self, len: u32) {
        match len {
            0..=15 => self.0.push(0x90 | len as u8),
            16..=0xffff => {
                self.0.push(0xdc);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xdd);
                self.0.extend_from_slice(&len.to_be_bytes());
            }
        }
    }

    pub(crate) fn map(&mut self, len: u32) {
        match len {
            0..=15 => self.0.push(0x80 | len as u8),
            16..=0xffff => {
                self.0.push(0xde);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xdf);
                self.0.extend_from_slice(&len.to_be_bytes());
            }
        }
    }

    pub(crate) fn uint(&mut self, v: u64) {
        match v {
            0..=0x7f => self.0.push(v as u8),
            0x80..=0xff => self.0.extend_from_slice(&[0xcc, v as u8]),
            0x100..=0xffff => {
                self.0.push(0xcd);
                self.0.extend_from_slice(&(v as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.push(0xce);
                self.0.extend_from_slice(&(v as u32).to_be_bytes());
            }
            _ => {
                self.0.push(0xcf);
                self.0.extend_from_slice(&v.to_be_bytes());
            }
        }
    }

    pub(crate) fn nil(&mut self) {
        self.0.push(0xc0);
    }

    pub(crate) fn str(&mut self, s: &str) {
        let len = s.len();
        match len {
            0..=31 => self.0.push(0xa0 | len as u8),
            32..=0xff => self.0.extend_from_slice(&[0xd9, len as u8]),
            0x100..=0xffff => {
                self.0.push(0xda);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xdb);
                self.0.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.0.extend_from_slice(s.as_bytes());
    }

    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.nil(),
        }
    }

    pub(crate) fn bin(&mut self, b: &[u8]) {
        let len = b.len();
        match len {
            0..=0xff => self.0.extend_from_slice(&[0xc4, len as u8]),
            0x100..=0xffff => {
                self.0.push(0xc5);
                self.0.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.0.push(0xc6);
                self.0.extend_from_slice(&(len as u32).to_be_bytes());
            }
        }
        self.0.extend_from_slice(b);
    }

    /// A timestamp extension in its 96-bit form (always 15 bytes, so an
    /// envelope's size does not depend on the instant).
    pub(crate) fn timestamp96(&mut self, secs: i64, nanos: u32) {
        self.0.extend_from_slice(&[0xc7, 12, EXT_TIMESTAMP as u8]);
        self.0.extend_from_slice(&nanos.to_be_bytes());
        self.0.extend_from_slice(&secs.to_be_bytes());
    }
}

/// Reads MessagePack values from a slice, borrowing from it.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn err(&self, what: &'static str) -> WireError {
        WireError { what, at: self.pos }
    }

    /// Whether every byte was read.
    pub(crate) fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn peek(&self) -> Result<u8, WireError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end"))
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn len16(&mut self) -> Result<usize, WireError> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    fn len32(&mut self) -> Result<usize, WireError> {
        usize::try_from(u32::from_be_bytes(self.be()?)).map_err(|_| self.err("length too large"))
    }

    pub(crate) fn array(&mut self) -> Result<usize, WireError> {
        match self.byte()? {
            b @ 0x90..=0x9f => Ok(usize::from(b & 0x0f)),
            0xdc => self.len16(),
            0xdd => self.len32(),
            _ => Err(self.err("expected an array")),
        }
    }

    pub(crate) fn map(&mut self) -> Result<usize, WireError> {
        match self.byte()? {
            b @ 0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => self.len16(),
            0xdf => self.len32(),
            _ => Err(self.err("expected a map")),
        }
    }

    pub(crate) fn uint(&mut self) -> Result<u64, WireError> {
        match self.byte()? {
            b @ 0x00..=0x7f => Ok(u64::from(b)),
            0xcc => Ok(u64::from(self.byte()?)),
            0xcd => Ok(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Ok(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Ok(u64::from_be_bytes(self.be()?)),
            _ => Err(self.err("expected an unsigned integer")),
        }
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        let v = self.uint()?;
        u32::try_from(v).map_err(|_| self.err("integer too large"))
    }

    pub(crate) fn nil(&mut self) -> Result<bool, WireError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, WireError> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.len16()?,
            0xdb => self.len32()?,
            _ => return Err(self.err("expected a string")),
        };
        let at = self.pos;
        std::str::from_utf8(self.take(len)?).map_err(|_| WireError {
            what: "a string that is not UTF-8",
            at,
        })
    }

    pub(crate) fn opt_str(&mut self) -> Result<Option<&'a str>, WireError> {
        if self.nil()? {
            return Ok(None);
        }
        self.str().map(Some)
    }

    pub(crate) fn bin(&mut self) -> Result<&'a [u8], WireError> {
        let len = match self.byte()? {
            0xc4 => usize::from(self.byte()?),
            0xc5 => self.len16()?,
            0xc6 => self.len32()?,
            _ => return Err(self.err("expected bytes")),
        };
        self.take(len)
    }

    /// A timestamp extension (any of its three forms) as seconds and nanoseconds.
    pub(crate) fn timestamp(&mut self) -> Result<(i64, u32), WireError> {
        let (len, ty) = match self.byte()? {
            0xd6 => (4, self.byte()?),
            0xd7 => (8, self.byte()?),
            0xc7 => {
                let len = usize::from(self.byte()?);
                (len, self.byte()?)
            }
            _ => return Err(self.err("expected a timestamp")),
        };
        if ty as i8 != EXT_TIMESTAMP {
            return Err(self.err("an extension that is not a timestamp"));
        }
        match len {
            4 => Ok((i64::from(u32::from_be_bytes(self.be()?)), 0)),
            8 => {
                let v = u64::from_be_bytes(self.be()?);
                let nanos = (v >> 34) as u32;
                let secs = (v & 0x3_ffff_ffff) as i64;
                Ok((secs, nanos))
            }
            12 => {
                let nanos = u32::from_be_bytes(self.be()?);
                let secs = i64::from_be_bytes(self.be()?);
                Ok((secs, nanos))
            }
            _ => Err(self.err("a timestamp of an unknown length")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form written reads back, and rmp-serde (an independent
    /// implementation) reads the same values.
    #[test]
    fn forms_round_trip_and_agree_with_rmp_serde() {
        let long = "x".repeat(70_000);
        let bytes = vec![7u8; 300];
        for n in [
            0u64,
            1,
            127,
            128,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            Writer(&mut buf).uint(n);
            assert_eq!(buf.len(), uint_size(n));
            assert_eq!(Reader::new(&buf).uint().unwrap(), n);
            assert_eq!(rmp_serde::from_slice::<u64>(&buf).unwrap(), n);
        }
        for s in [
            "",
            "ü",
            &"y".repeat(31),
            &"y".repeat(32),
            &"z".repeat(300),
            &long,
        ] {
            let mut buf = Vec::new();
            Writer(&mut buf).str(s);
            assert_eq!(buf.len(), str_size(s.len()));
            let mut r = Reader::new(&buf);
            assert_eq!(r.str().unwrap(), s);
            assert!(r.at_end());
            assert_eq!(rmp_serde::from_slice::<String>(&buf).unwrap(), s);
        }
        for b in [&[][..], &bytes[..10], &bytes[..], long.as_bytes()] {
            let mut buf = Vec::new();
            Writer(&mut buf).bin(b);
            assert_eq!(buf.len(), bin_size(b.len()));
            assert_eq!(Reader::new(&buf).bin().unwrap(), b);
            let back: serde_bytes_like::Buf = rmp_serde::from_slice(&buf).unwrap();
            assert_eq!(back.0, b);
        }
        for n in [0u32, 15, 16, 65_535, 65_536] {
            let mut buf = Vec::new();
            Writer(&mut buf).array(n);
            assert_eq!(buf.len(), map_size(n));
            Writer(&mut buf).map(n);
            assert_eq!(buf.len(), 2 * map_size(n));
            let mut r = Reader::new(&buf);
            assert_eq!(r.array().unwrap(), n as usize);
            assert_eq!(r.map().unwrap(), n as usize);
        }
        let mut buf = Vec::new();
        Writer(&mut buf).timestamp96(-5, 999_999_999);
        assert_eq!(buf.len(), TIMESTAMP96_SIZE);
        assert_eq!(Reader::new(&buf).timestamp().unwrap(), (-5, 999_999_999));
        let mut buf = Vec::new();
        Writer(&mut buf).opt_str(None);
        Writer(&mut buf).opt_str(Some("a"));
        let mut r = Reader::new(&buf);
        assert_eq!(r.opt_str().unwrap(), None);
        assert_eq!(r.opt_str().unwrap(), Some("a"));
    }

    #[test]
    fn short_and_wrong_input_is_an_error() {
        assert!(Reader::new(&[]).uint().is_err());
        assert!(Reader::new(&[0xcf, 1, 2]).uint().is_err());
        assert!(
            Reader::new(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a'])
                .str()
                .is_err()
        );
        assert!(Reader::new(&[0xa2, 0xff, 0xfe]).str().is_err());
        assert!(Reader::new(&[0xc6, 0xff, 0xff, 0xff, 0xff]).bin().is_err());
        assert!(Reader::new(&[0xc7, 12, 5]).timestamp().is_err());
        assert!(Reader::new(&[0xc7, 3, 0xff, 0, 0, 0]).timestamp().is_err());
        assert!(Reader::new(&[0x81]).array().is_err());
        assert!(Reader::new(&[0x91]).map().is_err());
    }

    mod serde_bytes_like {
        /// Deserializes MessagePack `bin` into a vector (serde's default for
        /// `Vec<u8>` is a sequence).
        pub(super) struct Buf(pub(super) Vec<u8>);

        impl<'de> serde::Deserialize<'de> for Buf {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = Buf;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("bytes")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Buf, E> {
                        Ok(Buf(v.to_vec()))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    }
}
