//! FIX tag=value codec: framing across partial reads, zero-copy parsing, and encoding.
//!
//! Framing follows the rules the QuickFIX family applies, so that a garbled message is dropped
//! the same way a counterparty expects: a message starts at `8=`, its length comes from
//! BodyLength (9), and it ends at the first `<SOH>10=...<SOH>` found at or after the end of the
//! declared body. Structural faults (first three fields not 8, 9, 35; BodyLength or CheckSum
//! wrong; a field without `=`) make the message *garbled*: the session ignores it.

use std::fmt;
use std::ops::Range;

use nom::IResult;
use nom::Parser;
use nom::bytes::complete::{tag as ntag, take};

/// The field separator.
pub const SOH: u8 = 0x01;

/// A tag number. Signed: a counterparty may send `-1=x`, which must be answered with a reject
/// naming tag -1, not dropped as garbage.
pub type Tag = i32;

/// Tags with special meaning in framing and the standard header and trailer.
pub mod tags {
    #![allow(missing_docs)]
    use super::Tag;
    pub const BEGIN_STRING: Tag = 8;
    pub const BODY_LENGTH: Tag = 9;
    pub const CHECK_SUM: Tag = 10;
    pub const MSG_TYPE: Tag = 35;
    pub const MSG_SEQ_NUM: Tag = 34;
    pub const SENDER_COMP_ID: Tag = 49;
    pub const TARGET_COMP_ID: Tag = 56;
    pub const SENDING_TIME: Tag = 52;
    pub const POSS_DUP_FLAG: Tag = 43;
    pub const POSS_RESEND: Tag = 97;
    pub const ORIG_SENDING_TIME: Tag = 122;
    pub const ON_BEHALF_OF_COMP_ID: Tag = 115;
    pub const ON_BEHALF_OF_SUB_ID: Tag = 116;
    pub const ON_BEHALF_OF_LOCATION_ID: Tag = 144;
    pub const DELIVER_TO_COMP_ID: Tag = 128;
    pub const DELIVER_TO_SUB_ID: Tag = 129;
    pub const DELIVER_TO_LOCATION_ID: Tag = 145;
    pub const BEGIN_SEQ_NO: Tag = 7;
    pub const END_SEQ_NO: Tag = 16;
    pub const NEW_SEQ_NO: Tag = 36;
    pub const GAP_FILL_FLAG: Tag = 123;
    pub const TEST_REQ_ID: Tag = 112;
    pub const HEART_BT_INT: Tag = 108;
    pub const ENCRYPT_METHOD: Tag = 98;
    pub const RESET_SEQ_NUM_FLAG: Tag = 141;
    pub const TEXT: Tag = 58;
    pub const REF_SEQ_NUM: Tag = 45;
    pub const REF_TAG_ID: Tag = 371;
    pub const REF_MSG_TYPE: Tag = 372;
    pub const SESSION_REJECT_REASON: Tag = 373;
    pub const BUSINESS_REJECT_REASON: Tag = 380;
    pub const BUSINESS_REJECT_REF_ID: Tag = 379;
    pub const USERNAME: Tag = 553;
    pub const PASSWORD: Tag = 554;
    pub const DEFAULT_APPL_VER_ID: Tag = 1137;
    pub const APPL_VER_ID: Tag = 1128;
    pub const LAST_MSG_SEQ_NUM_PROCESSED: Tag = 369;
}

/// Length fields whose next field is raw data that may contain SOH: (length tag, data tag).
const DATA_FIELDS: [(Tag, Tag); 16] = [
    (90, 91),
    (93, 89),
    (95, 96),
    (212, 213),
    (348, 349),
    (350, 351),
    (352, 353),
    (354, 355),
    (356, 357),
    (358, 359),
    (360, 361),
    (362, 363),
    (364, 365),
    (445, 446),
    (618, 619),
    (621, 622),
];

fn data_tag_for(length_tag: Tag) -> Option<Tag> {
    // Runs once per field, so a range test rejects almost every tag before the table search.
    if !(90..=621).contains(&length_tag) {
        return None;
    }
    DATA_FIELDS
        .iter()
        .find(|(l, _)| *l == length_tag)
        .map(|(_, d)| *d)
}

/// One field of a parsed message, borrowing its value from the read buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// Tag number.
    pub tag: Tag,
    /// Raw value bytes.
    pub value: &'a [u8],
}

impl fmt::Debug for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.tag, String::from_utf8_lossy(self.value))
    }
}

/// What framing found at the front of a read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// A complete frame occupies this range; bytes before its start are noise to drop.
    Frame(Range<usize>),
    /// No complete frame yet: drop `discard` leading bytes of noise and read more.
    NeedMore {
        /// Leading bytes that can never start a message.
        discard: usize,
    },
    /// The bytes up to `discard` were a frame that cannot be delimited (bad BodyLength digits,
    /// second field not BodyLength, or longer than the limit): drop them.
    Garbled {
        /// Bytes to drop.
        discard: usize,
    },
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// Locates the next message in `buf`. `max_len` bounds a frame so a stream of noise or a
/// huge BodyLength cannot grow the buffer without limit.
pub fn frame(buf: &[u8], max_len: usize) -> Framing {
    let Some(start) = find(buf, b"8=", 0) else {
        // Keep a trailing '8': it may be the start of the next message.
        let keep = usize::from(buf.last() == Some(&b'8'));
        return Framing::NeedMore {
            discard: buf.len() - keep,
        };
    };
    let b = &buf[start..];
    // 8=<BeginString><SOH>
    let Some(bs_end) = b.iter().position(|&c| c == SOH) else {
        return if b.len() > max_len {
            Framing::Garbled { discard: start + 2 }
        } else {
            Framing::NeedMore { discard: start }
        };
    };
    let rest = &b[bs_end + 1..];
    if rest.len() < 2 {
        return Framing::NeedMore { discard: start };
    }
    if !rest.starts_with(b"9=") {
        return Framing::Garbled { discard: start + 2 };
    }
    let Some(len_end) = rest.iter().position(|&c| c == SOH) else {
        return if rest.len() > 12 {
            Framing::Garbled { discard: start + 2 }
        } else {
            Framing::NeedMore { discard: start }
        };
    };
    let digits = &rest[2..len_end];
    let body_len = match parse_uint(digits) {
        Some(n) if n as usize <= max_len => n as usize,
        _ => return Framing::Garbled { discard: start + 2 },
    };
    let body_start = bs_end + 1 + len_end + 1;
    let body_end = body_start + body_len;
    if b.len() < body_end {
        return Framing::NeedMore { discard: start };
    }
    // The checksum field: the first <SOH>10= at or after the end of the declared body.
    let Some(cks) = find(b, b"\x0110=", body_end.saturating_sub(1)) else {
        return if b.len() > body_end + max_len {
            Framing::Garbled { discard: start + 2 }
        } else {
            Framing::NeedMore { discard: start }
        };
    };
    match b[cks + 4..].iter().position(|&c| c == SOH) {
        Some(p) => Framing::Frame(start..start + cks + 4 + p + 1),
        None => Framing::NeedMore { discard: start },
    }
}

/// Parses an unsigned decimal made only of digits (no sign, no spaces).
pub fn parse_uint(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    Some(n)
}

/// Why a framed message is garbled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Garbled {
    /// A field is not `tag=value<SOH>` with a numeric tag.
    #[error("malformed field at byte {0}")]
    MalformedField(usize),
    /// The message does not start with BeginString, BodyLength and MsgType.
    #[error("the first three fields are not BeginString, BodyLength and MsgType")]
    BadHeaderStart,
    /// The message does not end with CheckSum.
    #[error("the last field is not CheckSum")]
    NoCheckSum,
    /// BodyLength does not match the bytes between it and CheckSum.
    #[error("BodyLength {declared} but the body has {actual} bytes")]
    BodyLength {
        /// Declared.
        declared: usize,
        /// Counted.
        actual: usize,
    },
    /// CheckSum does not match the bytes.
    #[error("CheckSum {declared} but the message sums to {actual}")]
    CheckSum {
        /// Declared.
        declared: u32,
        /// Computed.
        actual: u32,
    },
}

/// `tag=`: an optionally negative decimal tag and the equals sign. Written out by hand (in
/// nom's parser shape) because it runs once per field: the generic integer parser costs twice
/// as much.
fn field_head(input: &[u8]) -> IResult<&[u8], Tag> {
    let err = || nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Digit));
    let (neg, digits) = match input.first() {
        Some(b'-') => (true, &input[1..]),
        _ => (false, input),
    };
    // At most ten digits fit the u64 accumulator without overflow; the range check follows.
    let mut v: u64 = 0;
    let mut i = 0;
    while let Some(&c) = digits.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 || i == 10 {
            break;
        }
        v = v * 10 + u64::from(d);
        i += 1;
    }
    if i == 0 || v > i32::MAX as u64 || digits.get(i) != Some(&b'=') {
        return Err(err());
    }
    let tag = if neg { -(v as Tag) } else { v as Tag };
    Ok((&digits[i + 1..], tag))
}

/// The index of the first SOH in `b`. Field values are short (a handful of bytes), where a
/// word-at-a-time scan beats a call into a vectorised search.
#[inline]
fn find_soh(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])) ^ ONES;
        let hit = w.wrapping_sub(ONES) & !w & HIGHS;
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(|&c| c == SOH).map(|p| i + p)
}

fn data_value(len: usize) -> impl FnMut(&[u8]) -> IResult<&[u8], &[u8]> {
    move |input: &[u8]| {
        let (input, value) = take(len)(input)?;
        let (input, _) = ntag(&[SOH][..]).parse(input)?;
        Ok((input, value))
    }
}

/// The arithmetic sum of bytes modulo 256, as FIX CheckSum defines it.
pub fn checksum(bytes: &[u8]) -> u32 {
    // Summing in u8 lanes is exact modulo 256 and lets the loop use the widest vector adds.
    u32::from(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// Splits a framed message into fields and checks its structure, BodyLength and CheckSum.
///
/// `fields` is cleared and refilled; values borrow from `msg`.
pub fn parse<'a>(msg: &'a [u8], fields: &mut Vec<Field<'a>>) -> Result<(), Garbled> {
    fields.clear();
    let mut pos = 0;
    // A data field's tag and length, armed by its length field; no real tag is i32::MIN.
    let mut data_tag = Tag::MIN;
    let mut data_len = 0;
    let mut cks_start = 0;
    while pos < msg.len() {
        let (rest, tag) = field_head(&msg[pos..]).map_err(|_| Garbled::MalformedField(pos))?;
        let value_start = msg.len() - rest.len();
        let (value, next) = if tag == data_tag {
            let (after, v) =
                data_value(data_len)(rest).map_err(|_| Garbled::MalformedField(pos))?;
            (v, msg.len() - after.len())
        } else {
            let end = find_soh(rest).ok_or(Garbled::MalformedField(pos))?;
            (&rest[..end], value_start + end + 1)
        };
        // A data field must follow its length field at once.
        data_tag = Tag::MIN;
        if let Some(d) = data_tag_for(tag)
            && let Some(len) = parse_uint(value)
        {
            (data_tag, data_len) = (d, len as usize);
        }
        if tag == tags::CHECK_SUM {
            if cks_start != 0 {
                return Err(Garbled::NoCheckSum);
            }
            cks_start = pos;
        }
        fields.push(Field { tag, value });
        pos = next;
    }
    let n = fields.len();
    if n < 4
        || fields[0].tag != tags::BEGIN_STRING
        || fields[1].tag != tags::BODY_LENGTH
        || fields[2].tag != tags::MSG_TYPE
    {
        return Err(Garbled::BadHeaderStart);
    }
    if fields[n - 1].tag != tags::CHECK_SUM {
        return Err(Garbled::NoCheckSum);
    }
    let declared = parse_uint(fields[1].value).unwrap_or(u64::MAX) as usize;
    // The body starts right after BodyLength's delimiter.
    let body_start =
        fields[1].value.as_ptr() as usize - msg.as_ptr() as usize + fields[1].value.len() + 1;
    let actual = cks_start - body_start;
    if declared != actual {
        return Err(Garbled::BodyLength { declared, actual });
    }
    let cks = fields[n - 1].value;
    let declared = if cks.len() == 3 {
        parse_uint(cks).map(|v| v as u32)
    } else {
        None
    };
    let actual = checksum(&msg[..cks_start]);
    match declared {
        Some(d) if d == actual => Ok(()),
        d => Err(Garbled::CheckSum {
            declared: d.unwrap_or(u32::MAX),
            actual,
        }),
    }
}

/// A parsed message: the framed bytes and their fields, in wire order.
#[derive(Clone)]
pub struct Message<'a> {
    /// The framed bytes.
    pub raw: &'a [u8],
    /// Fields in the order they appeared.
    pub fields: Vec<Field<'a>>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.raw).replace('\x01', "|"))
    }
}

impl<'a> Message<'a> {
    /// Frames and parses one complete message.
    pub fn parse(raw: &'a [u8]) -> Result<Message<'a>, Garbled> {
        let mut fields = Vec::with_capacity(24);
        parse(raw, &mut fields)?;
        Ok(Message { raw, fields })
    }

    /// The first value of a tag.
    pub fn get(&self, tag: Tag) -> Option<&'a [u8]> {
        self.fields.iter().find(|f| f.tag == tag).map(|f| f.value)
    }

    /// The first value of a tag as text.
    pub fn get_str(&self, tag: Tag) -> Option<&'a str> {
        self.get(tag).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of a tag as an unsigned integer.
    pub fn get_u64(&self, tag: Tag) -> Option<u64> {
        self.get(tag).and_then(parse_uint)
    }

    /// Whether a flag field is `Y`.
    pub fn flag(&self, tag: Tag) -> bool {
        self.get(tag) == Some(b"Y")
    }

    /// MsgType.
    pub fn msg_type(&self) -> &'a [u8] {
        self.fields[2].value
    }

    /// BeginString.
    pub fn begin_string(&self) -> &'a [u8] {
        self.fields[0].value
    }
}

/// Builds outgoing messages into reusable buffers, computing BodyLength and CheckSum.
#[derive(Default)]
pub struct Encoder {
    body: Vec<u8>,
    out: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Starts a message of `msg_type`; MsgType is the first body field.
    pub fn start(&mut self, msg_type: &[u8]) -> &mut Self {
        self.body.clear();
        self.field(tags::MSG_TYPE, msg_type)
    }

    /// Appends a field.
    pub fn field(&mut self, tag: Tag, value: &[u8]) -> &mut Self {
        self.tag(tag);
        self.body.extend_from_slice(value);
        self.body.push(SOH);
        self
    }

    /// Appends fields already encoded as `tag=value<SOH>`...
    pub fn encoded(&mut self, fields: &[u8]) -> &mut Self {
        self.body.extend_from_slice(fields);
        self
    }

    /// Appends a text field.
    pub fn str(&mut self, tag: Tag, value: &str) -> &mut Self {
        self.field(tag, value.as_bytes())
    }

    /// Appends an unsigned integer field.
    pub fn uint(&mut self, tag: Tag, value: u64) -> &mut Self {
        self.tag(tag);
        write_uint(&mut self.body, value);
        self.body.push(SOH);
        self
    }

    fn tag(&mut self, tag: Tag) {
        write_tag(&mut self.body, tag);
    }

    /// Finishes the message: prepends BeginString and BodyLength, appends CheckSum, and returns
    /// the complete bytes (valid until the next `start`).
    pub fn finish(&mut self, begin_string: &[u8]) -> &[u8] {
        self.out.clear();
        self.out.extend_from_slice(b"8=");
        self.out.extend_from_slice(begin_string);
        self.out.extend_from_slice(b"\x019=");
        write_uint(&mut self.out, self.body.len() as u64);
        self.out.push(SOH);
        self.out.extend_from_slice(&self.body);
        let sum = checksum(&self.out);
        self.out.extend_from_slice(b"10=");
        self.out.push(b'0' + (sum / 100) as u8);
        self.out.push(b'0' + (sum / 10 % 10) as u8);
        self.out.push(b'0' + (sum % 10) as u8);
        self.out.push(SOH);
        &self.out
    }
}

/// Appends the decimal digits of `v`.
#[inline]
pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    // Two digits per division from a table into a scratch array, which then goes in as one
    // fixed-size copy (two stores) cut back to the digits: a push per digit and a reversal,
    // or a copy of the digits' variable length (a call to memcpy), cost several times more.
    let n = v.checked_ilog10().map_or(1, |l| l as usize + 1);
    let mut buf = [b'0'; 20];
    let mut i = n;
    let mut v = v;
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        buf[i] = DIGIT_PAIRS[d];
        buf[i + 1] = DIGIT_PAIRS[d + 1];
    }
    if v >= 10 {
        let d = v as usize * 2;
        buf[i - 2] = DIGIT_PAIRS[d];
        buf[i - 1] = DIGIT_PAIRS[d + 1];
    } else {
        buf[i - 1] = b'0' + v as u8;
    }
    let start = out.len();
    out.extend_from_slice(&buf);
    out.truncate(start + n);
}

/// "00" to "99", for writing two digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Tags below this have their `tag=` prefix in [`TAG_PREFIXES`].
const TAG_PREFIX_TABLE: usize = 1024;

/// `tag=` for the tags below [`TAG_PREFIX_TABLE`], the prefix's length in the last byte.
static TAG_PREFIXES: [[u8; 8]; TAG_PREFIX_TABLE] = {
    let mut t = [[0u8; 8]; TAG_PREFIX_TABLE];
    let mut tag = 0;
    while tag < TAG_PREFIX_TABLE {
        let digits = if tag >= 1000 {
            4
        } else if tag >= 100 {
            3
        } else if tag >= 10 {
            2
        } else {
            1
        };
        let mut v = tag;
        let mut i = digits;
        while i > 0 {
            i -= 1;
            t[tag][i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        t[tag][digits] = b'=';
        t[tag][7] = digits as u8 + 1;
        tag += 1;
    }
    t
};

/// Appends `tag=` (a negative tag with its minus sign, as it was read).
#[inline]
pub fn write_tag(out: &mut Vec<u8>, tag: Tag) {
    match usize::try_from(tag).ok().and_then(|t| TAG_PREFIXES.get(t)) {
        // One 8-byte copy cut back to the prefix: the common tags cost two stores.
        Some(p) => {
            let start = out.len();
            out.extend_from_slice(p);
            out.truncate(start + usize::from(p[7]));
        }
        _ => {
            if tag < 0 {
                out.push(b'-');
            }
            write_uint(out, u64::from(tag.unsigned_abs()));
            out.push(b'=');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time reading of a field head, as the specification states it.
    fn slow_head(b: &[u8]) -> Option<(Tag, usize)> {
        let eq = b.iter().position(|&c| c == b'=')?;
        let digits = &b[..eq];
        if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        (v <= i32::MAX as u64).then_some((v as Tag, eq + 1))
    }

    #[test]
    fn word_at_a_time_scans_agree_with_byte_loops() {
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for tag in (0..20_000).chain([99_999, 1_234_567, 9_999_999, 12_345_678]) {
            inputs.push(format!("{tag}=x\x01pad").into_bytes());
            inputs.push(format!("{tag:05}=\x01").into_bytes());
        }
        for bad in [
            "1a=x\x01pad",
            "=1\x01pad",
            "12:=x\x01pad",
            "/9=x\x01ab",
            "9/=abcdef",
        ] {
            inputs.push(bad.as_bytes().to_vec());
        }
        for input in &inputs {
            let head = field_head(input)
                .ok()
                .map(|(rest, t)| (t, input.len() - rest.len()));
            assert_eq!(
                head,
                slow_head(input),
                "{:?}",
                String::from_utf8_lossy(input)
            );
            let soh = input.iter().position(|&c| c == SOH);
            assert_eq!(find_soh(input), soh);
        }
        for len in 0..40 {
            let mut b = vec![b'7'; len];
            assert_eq!(find_soh(&b), None);
            b.push(SOH);
            b.extend_from_slice(b"9\x01");
            assert_eq!(find_soh(&b), Some(len));
        }
    }

    fn soh(s: &str) -> Vec<u8> {
        s.replace('|', "\x01").into_bytes()
    }

    // A Logon as the acceptance suite sends it; CheckSum and BodyLength computed independently.
    const LOGON: &str =
        "8=FIX.4.4|9=63|35=A|34=1|49=TW44|52=20240101-00:00:00.000|56=ISLD|98=0|108=30|10=024|";

    #[test]
    fn integers_and_tags_are_written_as_decimal_text() {
        let mut values = vec![0, 1, 9, 10, 99, 100, 101, 999, 1_000, 65_535, u64::MAX];
        values.extend((0..20).map(|p| 10u64.pow(p)));
        values.extend((1..20).map(|p| 10u64.pow(p) - 1));
        for v in values {
            let mut out = b"x".to_vec();
            write_uint(&mut out, v);
            assert_eq!(out, format!("x{v}").into_bytes(), "{v}");
        }
        for tag in [
            0, 1, 9, 10, 35, 99, 100, 553, 999, 1000, 1023, 1024, 5000, 99_999, -1, -42,
        ] {
            let mut out = b"|".to_vec();
            write_tag(&mut out, tag);
            assert_eq!(out, format!("|{tag}=").into_bytes(), "{tag}");
        }
    }

    #[test]
    fn golden_logon_parses_with_real_checksum() {
        let raw = soh(LOGON);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.msg_type(), b"A");
        assert_eq!(m.get_u64(108), Some(30));
        assert_eq!(m.fields.len(), 10);
        assert_eq!(frame(&raw, 4096), Framing::Frame(0..raw.len()));
    }

    #[test]
    fn encoder_reproduces_the_golden_message() {
        let mut e = Encoder::new();
        e.start(b"A")
            .uint(34, 1)
            .str(49, "TW44")
            .str(52, "20240101-00:00:00.000")
            .str(56, "ISLD")
            .uint(98, 0)
            .uint(108, 30);
        assert_eq!(e.finish(b"FIX.4.4"), &soh(LOGON)[..]);
    }

    #[test]
    fn framing_handles_partial_reads_noise_and_two_messages() {
        let one = soh(LOGON);
        for cut in 0..one.len() {
            assert!(
                matches!(frame(&one[..cut], 4096), Framing::NeedMore { .. }),
                "cut {cut}"
            );
        }
        let mut two = b"noise".to_vec();
        two.extend_from_slice(&one);
        two.extend_from_slice(&one);
        assert_eq!(frame(&two, 4096), Framing::Frame(5..5 + one.len()));
        assert_eq!(frame(b"xyz", 4096), Framing::NeedMore { discard: 3 });
        assert_eq!(frame(b"xy8", 4096), Framing::NeedMore { discard: 2 });
    }

    #[test]
    fn garbled_messages_are_detected() {
        let bad_cks = soh(
            "8=FIX.4.4|9=63|35=A|34=1|49=TW44|52=20240101-00:00:00.000|56=ISLD|98=0|108=30|10=136|",
        );
        assert!(matches!(
            Message::parse(&bad_cks),
            Err(Garbled::CheckSum { .. })
        ));
        let bad_len = soh(
            "8=FIX.4.4|9=60|35=A|34=1|49=TW44|52=20240101-00:00:00.000|56=ISLD|98=0|108=30|10=132|",
        );
        assert!(matches!(
            Message::parse(&bad_len),
            Err(Garbled::BodyLength { .. })
        ));
        let bad_field = soh("8=FIX.4.4|9=20|35=0|4garbled9=TW|10=000|");
        assert!(matches!(
            Message::parse(&bad_field),
            Err(Garbled::MalformedField(_))
        ));
        let out_of_order = soh("8=FIX.4.4|9=5|34=2|35=0|10=000|");
        assert!(Message::parse(&out_of_order).is_err());
        // A BodyLength that is too short: the frame runs to the real CheckSum, then fails.
        let short = soh("8=FIX.4.4|9=10|35=0|34=2|49=TW44|56=ISLD|10=000|");
        let Framing::Frame(r) = frame(&short, 4096) else {
            panic!()
        };
        assert_eq!(r, 0..short.len());
        assert!(Message::parse(&short).is_err());
    }

    #[test]
    fn data_fields_may_contain_soh() {
        let mut e = Encoder::new();
        e.start(b"B")
            .uint(34, 2)
            .uint(95, 5)
            .field(96, b"a\x01b\x01c")
            .str(148, "x");
        let raw = e.finish(b"FIX.4.4").to_vec();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.get(96), Some(&b"a\x01b\x01c"[..]));
        assert_eq!(m.get(148), Some(&b"x"[..]));
    }
}
