//! The MessagePack forms Aether's positional wire formats use (the JetStream
//! store's envelope format 2, the bus envelope), written and read by hand
//! in one place: a positional array needs no field names, no serde visitor
//! and no intermediate allocation, and reading borrows strings and payloads
//! from the message. `benches/msgpack.rs` measures the reader beside `rmp`'s
//! own readers on the same envelope.
//!
//! Writing emits the smallest form of every integer and length, as `rmp`
//! does. Reading accepts every form MessagePack has for a value: an integer
//! in any of its ten forms (fixints, `uint 8–64`, `int 8–64`) is read if it
//! fits the type asked for, so a value written by another encoder reads the
//! same. Reading never panics: every length is checked against the bytes
//! that remain, and anything unexpected is a [`MsgpackError`].

/// Why bytes are not the MessagePack form expected at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct MsgpackError {
    /// What was expected or went wrong.
    pub what: &'static str,
    /// The offset into the input.
    pub at: usize,
}

/// The MessagePack timestamp extension type.
pub const EXT_TIMESTAMP: i8 = -1;

/// The marker of `nil`.
pub const NIL: u8 = 0xc0;

/// The bytes [`Writer::str`] writes for a string of `len` bytes.
#[must_use]
pub fn str_size(len: usize) -> usize {
    len + match len {
        0..=31 => 1,
        32..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes [`Writer::bin`] writes for `len` bytes.
#[must_use]
pub fn bin_size(len: usize) -> usize {
    len + match len {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes [`Writer::uint`] writes for `v`.
#[must_use]
pub fn uint_size(v: u64) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// The bytes [`Writer::map`] (or [`Writer::array`]) writes for `len` entries.
#[must_use]
pub fn map_size(len: u32) -> usize {
    match len {
        0..=15 => 1,
        16..=0xffff => 3,
        _ => 5,
    }
}

/// The bytes [`Writer::timestamp96`] writes.
pub const TIMESTAMP96_SIZE: usize = 15;

/// Where a [`Writer`] puts its bytes.
pub trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);
    /// Appends one byte.
    #[inline]
    fn put_byte(&mut self, b: u8) {
        self.put(&[b]);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        self.push(b);
    }
}

impl<T: Sink + ?Sized> Sink for &mut T {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        (**self).put(bytes);
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        (**self).put_byte(b);
    }
}

/// A slice being filled from its start, for a writer that sized its output
/// first (with the `*_size` functions): writing past its end panics, which
/// is a wrong size computed by the caller, never bad input.
#[derive(Debug)]
pub struct SliceSink<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl<'a> SliceSink<'a> {
    /// Fills `out` from its start.
    #[inline]
    pub fn new(out: &'a mut [u8]) -> Self {
        SliceSink { out, at: 0 }
    }

    /// How many bytes were written.
    #[must_use]
    #[inline]
    pub fn written(&self) -> usize {
        self.at
    }
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
    #[inline]
    fn put_byte(&mut self, b: u8) {
        self.out[self.at] = b;
        self.at += 1;
    }
}

/// Writes MessagePack values into a [`Sink`], each in its smallest form.
#[derive(Debug)]
pub struct Writer<S: Sink>(pub S);

impl<S: Sink> Writer<S> {
    /// A length header: the fix form `fix.0 | len` up to `fix.1`, then
    /// the 8-, 16- and 32-bit forms (`m8` absent for arrays and maps).
    #[inline]
    fn len_header(
        &mut self,
        len: usize,
        fix: Option<(u8, usize)>,
        m8: Option<u8>,
        m16: u8,
        m32: u8,
    ) {
        if let Some((base, limit)) = fix
            && len <= limit
        {
            self.0.put_byte(base | len as u8);
        } else if let Some(m8) = m8
            && let Ok(len) = u8::try_from(len)
        {
            self.0.put(&[m8, len]);
        } else if let Ok(len) = u16::try_from(len) {
            self.0.put_byte(m16);
            self.0.put(&len.to_be_bytes());
        } else {
            self.0.put_byte(m32);
            self.0.put(&(len as u32).to_be_bytes());
        }
    }

    /// An array header of `len` elements.
    #[inline]
    pub fn array(&mut self, len: u32) {
        self.len_header(len as usize, Some((0x90, 15)), None, 0xdc, 0xdd);
    }

    /// A map header of `len` entries.
    #[inline]
    pub fn map(&mut self, len: u32) {
        self.len_header(len as usize, Some((0x80, 15)), None, 0xde, 0xdf);
    }

    /// An unsigned integer.
    #[inline]
    pub fn uint(&mut self, v: u64) {
        match v {
            0..=0x7f => self.0.put_byte(v as u8),
            0x80..=0xff => self.0.put(&[0xcc, v as u8]),
            0x100..=0xffff => {
                self.0.put_byte(0xcd);
                self.0.put(&(v as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.0.put_byte(0xce);
                self.0.put(&(v as u32).to_be_bytes());
            }
            _ => {
                self.0.put_byte(0xcf);
                self.0.put(&v.to_be_bytes());
            }
        }
    }

    /// A signed integer (a non-negative one as [`uint`](Self::uint)
    /// writes it, as `rmp` does).
    #[inline]
    pub fn sint(&mut self, v: i64) {
        if let Ok(v) = u64::try_from(v) {
            self.uint(v);
        } else if v >= -32 {
            self.0.put_byte(v as u8);
        } else if let Ok(v) = i8::try_from(v) {
            self.0.put(&[0xd0, v as u8]);
        } else if let Ok(v) = i16::try_from(v) {
            self.0.put_byte(0xd1);
            self.0.put(&v.to_be_bytes());
        } else if let Ok(v) = i32::try_from(v) {
            self.0.put_byte(0xd2);
            self.0.put(&v.to_be_bytes());
        } else {
            self.0.put_byte(0xd3);
            self.0.put(&v.to_be_bytes());
        }
    }

    /// `nil`.
    #[inline]
    pub fn nil(&mut self) {
        self.0.put_byte(NIL);
    }

    /// A string.
    #[inline]
    pub fn str(&mut self, s: &str) {
        self.str_bytes(s.as_bytes());
    }

    /// A string given as its bytes (the caller vouches they are UTF-8).
    #[inline]
    pub fn str_bytes(&mut self, s: &[u8]) {
        self.len_header(s.len(), Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb);
        self.0.put(s);
    }

    /// A string, or `nil` for `None`.
    #[inline]
    pub fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.nil(),
        }
    }

    /// Binary data.
    #[inline]
    pub fn bin(&mut self, b: &[u8]) {
        self.len_header(b.len(), None, Some(0xc4), 0xc5, 0xc6);
        self.0.put(b);
    }

    /// A timestamp extension in its 96-bit form (always 15 bytes, so a
    /// record's size does not depend on the instant).
    #[inline]
    pub fn timestamp96(&mut self, secs: i64, nanos: u32) {
        self.0.put(&[0xc7, 12, EXT_TIMESTAMP as u8]);
        self.0.put(&nanos.to_be_bytes());
        self.0.put(&secs.to_be_bytes());
    }
}

/// Reads MessagePack values from a slice, borrowing from it.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    #[must_use]
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    #[inline]
    fn err(&self, what: &'static str) -> MsgpackError {
        MsgpackError { what, at: self.pos }
    }

    /// Whether every byte was read.
    #[must_use]
    #[inline]
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// The bytes not read yet.
    #[must_use]
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Skips `n` bytes a caller read from [`rest`](Self::rest) by other means.
    ///
    /// # Errors
    /// If fewer than `n` bytes remain.
    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), MsgpackError> {
        self.take(n).map(drop)
    }

    #[inline]
    fn peek(&self) -> Result<u8, MsgpackError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end"))
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, MsgpackError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    #[inline]
    fn be<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    fn len16(&mut self) -> Result<usize, MsgpackError> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }

    #[inline]
    fn len32(&mut self) -> Result<usize, MsgpackError> {
        usize::try_from(u32::from_be_bytes(self.be()?)).map_err(|_| self.err("length too large"))
    }

    /// An array header: the number of elements.
    ///
    /// # Errors
    /// If the next value is not an array header.
    #[inline]
    pub fn array(&mut self) -> Result<usize, MsgpackError> {
        match self.byte()? {
            b @ 0x90..=0x9f => Ok(usize::from(b & 0x0f)),
            0xdc => self.len16(),
            0xdd => self.len32(),
            _ => Err(self.err("expected an array")),
        }
    }

    /// A map header: the number of entries.
    ///
    /// # Errors
    /// If the next value is not a map header.
    #[inline]
    pub fn map(&mut self) -> Result<usize, MsgpackError> {
        match self.byte()? {
            b @ 0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => self.len16(),
            0xdf => self.len32(),
            _ => Err(self.err("expected a map")),
        }
    }

    /// An integer in any of its forms, if it fits `T`.
    ///
    /// # Errors
    /// If the next value is not an integer, or does not fit `T`.
    #[inline]
    pub fn int<T: TryFrom<u64> + TryFrom<i64>>(&mut self) -> Result<T, MsgpackError> {
        let at = self.pos;
        let marker = self.byte()?;
        let fits = match marker {
            0x00..=0x7f => T::try_from(u64::from(marker)).ok(),
            0xe0..=0xff => T::try_from(i64::from(marker as i8)).ok(),
            0xcc => T::try_from(u64::from(self.byte()?)).ok(),
            0xcd => T::try_from(u64::from(u16::from_be_bytes(self.be()?))).ok(),
            0xce => T::try_from(u64::from(u32::from_be_bytes(self.be()?))).ok(),
            0xcf => T::try_from(u64::from_be_bytes(self.be()?)).ok(),
            0xd0 => T::try_from(i64::from(i8::from_be_bytes(self.be()?))).ok(),
            0xd1 => T::try_from(i64::from(i16::from_be_bytes(self.be()?))).ok(),
            0xd2 => T::try_from(i64::from(i32::from_be_bytes(self.be()?))).ok(),
            0xd3 => T::try_from(i64::from_be_bytes(self.be()?)).ok(),
            _ => {
                self.pos = at;
                return Err(self.err("expected an integer"));
            }
        };
        fits.ok_or(MsgpackError {
            what: "an integer out of range",
            at,
        })
    }

    /// A non-negative integer, in any form.
    ///
    /// # Errors
    /// See [`int`](Self::int).
    #[inline]
    pub fn uint(&mut self) -> Result<u64, MsgpackError> {
        self.int()
    }

    /// A non-negative integer that fits 32 bits, in any form.
    ///
    /// # Errors
    /// See [`int`](Self::int).
    #[inline]
    pub fn u32(&mut self) -> Result<u32, MsgpackError> {
        self.int()
    }

    /// Reads a `nil` if one is next: whether it did.
    ///
    /// # Errors
    /// At the end of the input.
    #[inline]
    pub fn nil(&mut self) -> Result<bool, MsgpackError> {
        if self.peek()? == NIL {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// A string's bytes, not checked to be UTF-8 (for a caller that compares
    /// them with a string it holds, or checks them later).
    ///
    /// # Errors
    /// If the next value is not a string, or runs past the end.
    #[inline]
    pub fn str_bytes(&mut self) -> Result<&'a [u8], MsgpackError> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.len16()?,
            0xdb => self.len32()?,
            _ => return Err(self.err("expected a string")),
        };
        self.take(len)
    }

    /// A string.
    ///
    /// # Errors
    /// If the next value is not a string, runs past the end or is not UTF-8.
    #[inline]
    pub fn str(&mut self) -> Result<&'a str, MsgpackError> {
        let at = self.pos;
        std::str::from_utf8(self.str_bytes()?).map_err(|_| MsgpackError {
            what: "a string that is not UTF-8",
            at,
        })
    }

    /// A string, or `None` for `nil`.
    ///
    /// # Errors
    /// See [`str`](Self::str).
    #[inline]
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, MsgpackError> {
        if self.nil()? {
            return Ok(None);
        }
        self.str().map(Some)
    }

    /// Binary data.
    ///
    /// # Errors
    /// If the next value is not binary data, or runs past the end.
    #[inline]
    pub fn bin(&mut self) -> Result<&'a [u8], MsgpackError> {
        let len = match self.byte()? {
            0xc4 => usize::from(self.byte()?),
            0xc5 => self.len16()?,
            0xc6 => self.len32()?,
            _ => return Err(self.err("expected bytes")),
        };
        self.take(len)
    }

    /// A timestamp extension (any of its three forms) as seconds and
    /// nanoseconds.
    ///
    /// # Errors
    /// If the next value is not a timestamp extension of a known length.
    #[inline]
    pub fn timestamp(&mut self) -> Result<(i64, u32), MsgpackError> {
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
    fn integers_are_read_in_every_form_if_they_fit() {
        let forms: [(&[u8], i64); 10] = [
            (&[0x05], 5),
            (&[0xff], -1),
            (&[0xcc, 200], 200),
            (&[0xcd, 1, 0], 256),
            (&[0xce, 0, 1, 0, 0], 65_536),
            (&[0xcf, 0, 0, 0, 1, 0, 0, 0, 0], 1 << 32),
            (&[0xd0, 0x80], -128),
            (&[0xd1, 0x80, 0], -32_768),
            (&[0xd2, 0, 0, 0, 7], 7),
            (&[0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], -2),
        ];
        for (bytes, want) in forms {
            assert_eq!(Reader::new(bytes).int::<i64>().unwrap(), want, "{bytes:x?}");
            assert_eq!(rmp_serde::from_slice::<i64>(bytes).unwrap(), want);
            let unsigned = Reader::new(bytes).uint();
            assert_eq!(unsigned.is_ok(), want >= 0, "{bytes:x?}");
        }
        let err = Reader::new(&[0xcd, 1, 0]).int::<u8>().unwrap_err();
        assert_eq!(err.what, "an integer out of range");
        assert_eq!(Reader::new(&[0xc0]).int::<u8>().unwrap_err().at, 0);
    }

    #[test]
    fn a_slice_sink_gets_what_a_vector_gets() {
        let mut v = Vec::new();
        let mut out = [0u8; 64];
        let mut slice = SliceSink::new(&mut out);
        for sink in [&mut v as &mut dyn Sink, &mut slice] {
            let mut w = Writer(sink);
            w.array(3);
            w.sint(-200);
            w.str("naïve");
            w.bin(&[1, 2, 3]);
        }
        let n = slice.written();
        assert_eq!(&out[..n], &v[..]);
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
