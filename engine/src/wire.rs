//! Little-endian fixed-layout encoding helpers for the binary command and event records.

use crate::types::ClOrdId;

/// Version of the binary record layout; bumped whenever a record's layout changes.
pub const FORMAT_VERSION: u8 = 1;

/// Why a binary record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ended before the record did.
    #[error("record truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the record needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The record was written by an unknown layout version.
    #[error("unsupported record format version {0}")]
    Version(u8),
    /// The record kind byte is unknown.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// A field holds a value outside its enumeration.
    #[error("invalid value {value} for field {field}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// The offending value.
        value: u64,
    },
}

/// Writes fields into a fixed-size byte slice.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, pos: 0 }
    }

    /// Bytes written so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    /// Writes a byte.
    pub fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    /// Writes a u16.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    /// Writes a u32.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// Writes a u64.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Writes an i64.
    pub fn i64(&mut self, v: i64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Writes a ClOrdID in its fixed-size form.
    pub fn cl_ord_id(&mut self, v: &ClOrdId) {
        self.bytes(v.raw());
    }
}

/// Reads fields from a byte slice, failing cleanly on truncation.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless `n` more bytes are available.
    pub fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < self.pos + n {
            Err(DecodeError::Truncated {
                need: self.pos + n,
                have: self.buf.len(),
            })
        } else {
            Ok(())
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.need(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    /// Reads a byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads an i64.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Reads a ClOrdID.
    pub fn cl_ord_id(&mut self) -> Result<ClOrdId, DecodeError> {
        Ok(ClOrdId::from_raw(self.array()?))
    }

    /// Reads an enumerated byte through `decode`, naming the field on failure.
    pub fn enum_u8<T>(
        &mut self,
        field: &'static str,
        decode: fn(u8) -> Option<T>,
    ) -> Result<T, DecodeError> {
        let v = self.u8()?;
        decode(v).ok_or(DecodeError::Field {
            field,
            value: u64::from(v),
        })
    }
}

/// A value with a fixed-size little-endian encoding.
pub trait Field: Sized {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Writes the value.
    fn put(&self, w: &mut Writer<'_>);
    /// Reads a value.
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// A record body with a fixed layout made of [`Field`]s.
pub trait Layout: Sized {
    /// Encoded size of the body in bytes.
    const LEN: usize;
    /// Writes the body.
    fn write(&self, w: &mut Writer<'_>);
    /// Reads a body.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

macro_rules! int_field {
    ($($t:ty => $m:ident),*) => {$(
        impl Field for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(&self, w: &mut Writer<'_>) { w.$m(*self) }
            fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> { r.$m() }
        }
    )*};
}
int_field!(u8 => u8, u16 => u16, u32 => u32, u64 => u64, i64 => i64);

macro_rules! newtype_field {
    ($($t:ident($inner:ty)),*) => {$(
        impl Field for crate::types::$t {
            const SIZE: usize = <$inner as Field>::SIZE;
            fn put(&self, w: &mut Writer<'_>) { self.0.put(w) }
            fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> { Ok(crate::types::$t(<$inner>::get(r)?)) }
        }
    )*};
}
newtype_field!(OrderId(u64), AccountId(u32), SessionId(u32), SymbolId(u16));

macro_rules! enum_field {
    ($($t:ty => $name:literal),*) => {$(
        impl Field for $t {
            const SIZE: usize = 1;
            fn put(&self, w: &mut Writer<'_>) { w.u8(*self as u8) }
            fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> { r.enum_u8($name, <$t>::from_u8) }
        }
    )*};
}
enum_field!(
    crate::types::Side => "side",
    crate::types::OrdType => "ord_type",
    crate::types::TimeInForce => "time_in_force",
    crate::types::OrdStatus => "ord_status",
    crate::reject::CancelReason => "cancel_reason",
    crate::command::MassScope => "mass_scope"
);

/// Absent as 0, else the side's code.
impl Field for Option<crate::types::Side> {
    const SIZE: usize = 1;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(self.map_or(0, |s| s as u8))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.enum_u8("side", |v| match v {
            0 => Some(None),
            v => crate::types::Side::from_u8(v).map(Some),
        })
    }
}

/// A presence byte, then the id (0 when absent).
impl Field for Option<crate::types::AccountId> {
    const SIZE: usize = 5;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(u8::from(self.is_some()));
        w.u32(self.map_or(0, |a| a.0))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let present = bool::get(r)?;
        let id = r.u32()?;
        Ok(present.then_some(crate::types::AccountId(id)))
    }
}

impl Field for bool {
    const SIZE: usize = 1;
    fn put(&self, w: &mut Writer<'_>) {
        w.u8(u8::from(*self))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.enum_u8("bool", |v| match v {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        })
    }
}

impl Field for ClOrdId {
    const SIZE: usize = ClOrdId::CAPACITY;
    fn put(&self, w: &mut Writer<'_>) {
        w.cl_ord_id(self)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.cl_ord_id()
    }
}

impl Field for crate::reject::RejectReason {
    const SIZE: usize = 2;
    fn put(&self, w: &mut Writer<'_>) {
        w.u16(self.code())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.u16()?;
        crate::reject::RejectReason::from_code(v).ok_or(DecodeError::Field {
            field: "reject_reason",
            value: u64::from(v),
        })
    }
}

impl Field for Option<crate::reject::RejectReason> {
    const SIZE: usize = 2;
    fn put(&self, w: &mut Writer<'_>) {
        w.u16(self.map_or(0, |r| r.code()))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u16()? {
            0 => Ok(None),
            v => crate::reject::RejectReason::from_code(v)
                .map(Some)
                .ok_or(DecodeError::Field {
                    field: "reject_reason",
                    value: u64::from(v),
                }),
        }
    }
}

/// Implements [`Layout`] for a struct from its fields in wire order, and pins the encoded size
/// at compile time so that a layout change cannot slip in without a format version bump.
macro_rules! layout {
    ($name:ident { $($f:ident : $t:ty),* $(,)? } == $size:expr) => {
        impl $crate::wire::Layout for $name {
            const LEN: usize = 0 $(+ <$t as $crate::wire::Field>::SIZE)*;
            #[allow(unused_variables)]
            fn write(&self, w: &mut $crate::wire::Writer<'_>) {
                $( $crate::wire::Field::put(&self.$f, w); )*
            }
            #[allow(unused_variables)]
            fn read(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::wire::DecodeError> {
                Ok($name { $( $f: <$t as $crate::wire::Field>::get(r)?, )* })
            }
        }
        impl $crate::wire::Field for $name {
            const SIZE: usize = <$name as $crate::wire::Layout>::LEN;
            fn put(&self, w: &mut $crate::wire::Writer<'_>) {
                $crate::wire::Layout::write(self, w)
            }
            fn get(r: &mut $crate::wire::Reader<'_>) -> Result<Self, $crate::wire::DecodeError> {
                <$name as $crate::wire::Layout>::read(r)
            }
        }
        const _: () = assert!(
            <$name as $crate::wire::Layout>::LEN == $size,
            concat!("the wire layout of ", stringify!($name), " changed: update its size and bump FORMAT_VERSION")
        );
    };
}
pub(crate) use layout;
