//! FIX data dictionaries in QuickFIX's XML format, and message validation driven by them.
//!
//! A session is configured with a dictionary file (`DataDictionary=` in QuickFIX terms): FIX.4.4
//! sessions with one, FIXT.1.1 sessions with a transport dictionary (header, trailer and session
//! messages) plus an application dictionary. Validation answers each fault the way the FIX
//! rules (and the QuickFIX family) do, with a SessionRejectReason and the tag at fault.

// Fx: the dictionary is looked up for every field of every message; its keys are trusted.
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use smallvec::SmallVec;
use std::path::Path;

use crate::codec::{Field, Message, Tag, tags};

/// The type of a field's value, as far as validation cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Integers (INT, SEQNUM, LENGTH, NUMINGROUP, TAGNUM, DAYOFMONTH).
    Int,
    /// Decimals (FLOAT, PRICE, QTY, AMT, PRICEOFFSET, PERCENTAGE).
    Float,
    /// A single character.
    Char,
    /// `Y` or `N`.
    Boolean,
    /// `YYYYMMDD-HH:MM:SS[.fff...]`.
    UtcTimestamp,
    /// `HH:MM:SS[.fff...]`.
    UtcTimeOnly,
    /// `YYYYMMDD`.
    UtcDateOnly,
    /// Space-separated values, each from the enumeration.
    MultipleValue,
    /// Anything else: free text.
    Text,
}

impl FieldType {
    fn from_xml(t: &str) -> FieldType {
        match t {
            "INT" | "SEQNUM" | "LENGTH" | "NUMINGROUP" | "TAGNUM" | "DAYOFMONTH" => FieldType::Int,
            "FLOAT" | "PRICE" | "QTY" | "AMT" | "PRICEOFFSET" | "PERCENTAGE" => FieldType::Float,
            "CHAR" => FieldType::Char,
            "BOOLEAN" => FieldType::Boolean,
            "UTCTIMESTAMP" => FieldType::UtcTimestamp,
            "UTCTIMEONLY" => FieldType::UtcTimeOnly,
            "UTCDATEONLY" | "UTCDATE" => FieldType::UtcDateOnly,
            "MULTIPLEVALUESTRING" | "MULTIPLESTRINGVALUE" | "MULTIPLECHARVALUE" => {
                FieldType::MultipleValue
            }
            _ => FieldType::Text,
        }
    }

    /// Whether `v` is a well-formed value of this type.
    pub fn accepts(self, v: &[u8]) -> bool {
        match self {
            FieldType::Int => {
                let d = v.strip_prefix(b"-").unwrap_or(v);
                !d.is_empty() && d.iter().all(u8::is_ascii_digit)
            }
            FieldType::Float => {
                let d = v.strip_prefix(b"-").unwrap_or(v);
                let mut dots = 0;
                let mut digits = 0;
                for &c in d {
                    match c {
                        b'.' => dots += 1,
                        b'0'..=b'9' => digits += 1,
                        _ => return false,
                    }
                }
                dots <= 1 && digits > 0
            }
            FieldType::Char => v.len() == 1,
            FieldType::Boolean => v == b"Y" || v == b"N",
            FieldType::UtcTimestamp => crate::time::parse_utc_timestamp(v).is_some(),
            FieldType::UtcTimeOnly => crate::time::parse_time_only(v).is_some(),
            FieldType::UtcDateOnly => v.len() == 8 && crate::time::parse_date(v).is_some(),
            FieldType::MultipleValue | FieldType::Text => true,
        }
    }
}

/// A field definition.
#[derive(Clone, Debug)]
pub struct FieldDef {
    /// Tag number.
    pub tag: Tag,
    /// Name.
    pub name: String,
    /// Value type.
    pub ftype: FieldType,
    /// Allowed values, when the field is an enumeration.
    pub values: Option<HashSet<Vec<u8>>>,
    /// The one-byte allowed values as a bitmap: most enumerations are single characters, and a
    /// bit test is cheaper than hashing the value for every message.
    bytes: [u64; 4],
}

impl FieldDef {
    /// Checks a non-empty value against the field's type and enumeration.
    fn check_value(&self, v: &[u8]) -> Result<(), RejectReason> {
        if !self.ftype.accepts(v) {
            return Err(RejectReason::IncorrectDataFormat);
        }
        if let Some(values) = &self.values {
            let ok = if self.ftype == FieldType::MultipleValue {
                v.split(|&c| c == b' ').all(|v| self.allows(values, v))
            } else {
                self.allows(values, v)
            };
            if !ok {
                return Err(RejectReason::ValueIncorrect);
            }
        }
        Ok(())
    }

    /// Whether a value is one of the enumeration's.
    fn allows(&self, values: &HashSet<Vec<u8>>, v: &[u8]) -> bool {
        match v {
            [c] => self.bytes[usize::from(*c / 64)] & (1 << (c % 64)) != 0,
            _ => values.contains(v),
        }
    }
}

/// Tags below this are kept in flat tables; the rare larger ones in hash tables.
const DENSE_TAGS: usize = 4096;

fn dense(tag: Tag) -> Option<usize> {
    usize::try_from(tag).ok().filter(|&i| i < DENSE_TAGS)
}

/// A set of tags: a bitmap for the small tags (every standard one), a hash set for the rest.
/// Validation asks it several times per field of every message.
#[derive(Clone, Debug, Default)]
pub struct TagSet {
    bits: Vec<u64>,
    large: HashSet<Tag>,
}

impl TagSet {
    /// Adds a tag; false when it was already in.
    pub fn insert(&mut self, tag: Tag) -> bool {
        let Some(i) = dense(tag) else {
            return self.large.insert(tag);
        };
        if self.bits.len() <= i / 64 {
            self.bits.resize(i / 64 + 1, 0);
        }
        let (word, bit) = (&mut self.bits[i / 64], 1u64 << (i % 64));
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    /// Whether a tag is in.
    pub fn contains(&self, tag: Tag) -> bool {
        match dense(tag) {
            Some(i) => self
                .bits
                .get(i / 64)
                .is_some_and(|w| w & (1 << (i % 64)) != 0),
            None => self.large.contains(&tag),
        }
    }
}

/// The fields allowed at one level of a message (the body, or one repeating group entry).
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Every tag allowed at this level, in definition order.
    pub order: Vec<Tag>,
    /// The same, as a set.
    pub allowed: TagSet,
    /// Required tags, ascending.
    pub required: Vec<Tag>,
    /// Repeating groups at this level, by their NumInGroup tag.
    pub groups: HashMap<Tag, Group>,
}

/// A repeating group: its delimiter (first field) and the layout of one entry.
#[derive(Clone, Debug)]
pub struct Group {
    /// The field that starts every entry.
    pub delimiter: Tag,
    /// Fields of one entry.
    pub layout: Layout,
}

/// A message definition.
#[derive(Clone, Debug)]
pub struct MessageDef {
    /// Name, e.g. `NewOrderSingle`.
    pub name: String,
    /// MsgType value.
    pub msg_type: Vec<u8>,
    /// Whether it is a session-level (admin) message.
    pub admin: bool,
    /// Body layout.
    pub body: Layout,
}

/// A loaded data dictionary.
#[derive(Clone, Debug)]
pub struct Dictionary {
    /// BeginString this dictionary describes (`FIX.4.4`, `FIXT.1.1`, or `FIX.5.0SP2` for an
    /// application dictionary).
    pub version: String,
    /// Whether this is a transport (FIXT) dictionary.
    pub transport: bool,
    fields: Vec<FieldDef>,
    /// Index into `fields` + 1 by tag, for tags below [`DENSE_TAGS`] (0: not defined).
    field_at: Vec<u32>,
    /// Index into `fields` of the larger tags.
    large_fields: HashMap<Tag, u32>,
    by_name: HashMap<String, Tag>,
    /// Header layout.
    pub header: Layout,
    /// Trailer layout.
    pub trailer: Layout,
    messages: HashMap<Vec<u8>, MessageDef>,
}

/// A dictionary that could not be loaded, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// The file could not be read.
    #[error("cannot read dictionary {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The XML is malformed.
    #[error("dictionary is not well-formed XML: {0}")]
    Xml(#[from] roxmltree::Error),
    /// The XML does not describe a dictionary.
    #[error("invalid dictionary: {0}")]
    Invalid(String),
}

fn attr<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> Result<&'a str, DictionaryError> {
    n.attribute(name).ok_or_else(|| {
        DictionaryError::Invalid(format!("<{}> without {name}", n.tag_name().name()))
    })
}

impl Dictionary {
    /// Loads a dictionary file.
    pub fn load(path: &Path) -> Result<Dictionary, DictionaryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DictionaryError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Dictionary::parse(&text)
    }

    /// Parses a dictionary from its XML text.
    pub fn parse(xml: &str) -> Result<Dictionary, DictionaryError> {
        let doc = roxmltree::Document::parse(xml)?;
        let root = doc.root_element();
        if root.tag_name().name() != "fix" {
            return Err(DictionaryError::Invalid("root element is not <fix>".into()));
        }
        let kind = root.attribute("type").unwrap_or("FIX");
        let major = attr(root, "major")?;
        let minor = attr(root, "minor")?;
        let sp = root.attribute("servicepack").unwrap_or("0");
        let transport = kind == "FIXT";
        let version = if transport {
            format!("FIXT.{major}.{minor}")
        } else if major == "5" || sp != "0" {
            if sp == "0" {
                format!("FIX.{major}.{minor}")
            } else {
                format!("FIX.{major}.{minor}SP{sp}")
            }
        } else {
            format!("FIX.{major}.{minor}")
        };
        let child = |name: &str| root.children().find(|c| c.tag_name().name() == name);

        let mut fields: Vec<FieldDef> = Vec::new();
        let mut field_at: Vec<u32> = Vec::new();
        let mut large_fields = HashMap::default();
        let mut by_name = HashMap::default();
        if let Some(fs) = child("fields") {
            for f in fs.children().filter(|c| c.tag_name().name() == "field") {
                let tag: Tag = attr(f, "number")?.parse().map_err(|_| {
                    DictionaryError::Invalid(format!("field number {:?}", f.attribute("number")))
                })?;
                let name = attr(f, "name")?.to_string();
                let ftype = FieldType::from_xml(attr(f, "type")?);
                let values: HashSet<Vec<u8>> = f
                    .children()
                    .filter(|c| c.tag_name().name() == "value")
                    .filter_map(|v| v.attribute("enum"))
                    .map(|e| e.as_bytes().to_vec())
                    .collect();
                // Booleans list Y and N; validating them as an enumeration would only repeat
                // the format check with a different reason.
                let values = (!values.is_empty() && ftype != FieldType::Boolean).then_some(values);
                let mut bytes = [0u64; 4];
                for v in values.iter().flatten() {
                    if let [c] = v[..] {
                        bytes[usize::from(c / 64)] |= 1 << (c % 64);
                    }
                }
                by_name.insert(name.clone(), tag);
                let def = FieldDef {
                    tag,
                    name,
                    ftype,
                    values,
                    bytes,
                };
                // A tag defined twice: the later definition wins, as a map insert would.
                let at = match dense(tag) {
                    Some(i) => {
                        if field_at.len() <= i {
                            field_at.resize(i + 1, 0);
                        }
                        &mut field_at[i]
                    }
                    None => large_fields.entry(tag).or_insert(0),
                };
                if *at == 0 {
                    fields.push(def);
                    *at = fields.len() as u32;
                } else {
                    fields[*at as usize - 1] = def;
                }
            }
        }
        let components: HashMap<&str, roxmltree::Node> = child("components")
            .map(|cs| {
                cs.children()
                    .filter(|c| c.tag_name().name() == "component")
                    .filter_map(|c| c.attribute("name").map(|n| (n, c)))
                    .collect()
            })
            .unwrap_or_default();
        let builder = Builder {
            by_name: &by_name,
            components: &components,
        };
        let header = match child("header") {
            Some(h) => builder.layout(h, true, 0)?,
            None => Layout::default(),
        };
        let trailer = match child("trailer") {
            Some(t) => builder.layout(t, true, 0)?,
            None => Layout::default(),
        };
        let mut messages = HashMap::default();
        if let Some(ms) = child("messages") {
            for m in ms.children().filter(|c| c.tag_name().name() == "message") {
                let msg_type = attr(m, "msgtype")?.as_bytes().to_vec();
                let def = MessageDef {
                    name: attr(m, "name")?.to_string(),
                    msg_type: msg_type.clone(),
                    admin: m.attribute("msgcat") == Some("admin"),
                    body: builder.layout(m, true, 0)?,
                };
                messages.insert(msg_type, def);
            }
        }
        Ok(Dictionary {
            version,
            transport,
            fields,
            field_at,
            large_fields,
            by_name,
            header,
            trailer,
            messages,
        })
    }

    /// A field definition by tag.
    pub fn field(&self, tag: Tag) -> Option<&FieldDef> {
        let i = match dense(tag) {
            Some(i) => *self.field_at.get(i)?,
            None => *self.large_fields.get(&tag)?,
        };
        self.fields.get((i as usize).checked_sub(1)?)
    }

    /// A tag by field name.
    pub fn tag(&self, name: &str) -> Option<Tag> {
        self.by_name.get(name).copied()
    }

    /// A message definition by MsgType.
    pub fn message(&self, msg_type: &[u8]) -> Option<&MessageDef> {
        self.messages.get(msg_type)
    }

    /// Every message definition.
    pub fn messages(&self) -> impl Iterator<Item = &MessageDef> {
        self.messages.values()
    }

    /// Whether a tag belongs in the standard header.
    pub fn is_header_field(&self, tag: Tag) -> bool {
        self.header.allowed.contains(tag) || is_standard_header(tag)
    }

    /// Whether a tag belongs in the standard trailer.
    pub fn is_trailer_field(&self, tag: Tag) -> bool {
        self.trailer.allowed.contains(tag) || matches!(tag, 93 | 89 | tags::CHECK_SUM)
    }
}

/// Header tags every FIX version defines, whatever a dictionary says.
fn is_standard_header(tag: Tag) -> bool {
    matches!(
        tag,
        8 | 9
            | 35
            | 49
            | 56
            | 115
            | 128
            | 90
            | 91
            | 34
            | 50
            | 142
            | 57
            | 143
            | 116
            | 144
            | 129
            | 145
            | 43
            | 97
            | 52
            | 122
            | 212
            | 213
            | 347
            | 369
            | 627
            | 628
            | 629
            | 630
            | 1128
            | 1129
            | 1156
    )
}

struct Builder<'a, 'x> {
    by_name: &'a HashMap<String, Tag>,
    components: &'a HashMap<&'x str, roxmltree::Node<'x, 'x>>,
}

impl Builder<'_, '_> {
    fn tag(&self, name: &str) -> Result<Tag, DictionaryError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| DictionaryError::Invalid(format!("unknown field {name}")))
    }

    /// Flattens an element's fields, components and groups into a layout.
    fn layout(
        &self,
        node: roxmltree::Node,
        required: bool,
        depth: usize,
    ) -> Result<Layout, DictionaryError> {
        let mut l = Layout::default();
        self.add(&mut l, node, required, depth)?;
        l.required.sort_unstable();
        l.required.dedup();
        Ok(l)
    }

    fn add(
        &self,
        l: &mut Layout,
        node: roxmltree::Node,
        required: bool,
        depth: usize,
    ) -> Result<(), DictionaryError> {
        if depth > 32 {
            return Err(DictionaryError::Invalid(
                "components nest too deeply".into(),
            ));
        }
        for c in node.children().filter(|c| c.is_element()) {
            let req = required && c.attribute("required") == Some("Y");
            match c.tag_name().name() {
                "field" => {
                    let t = self.tag(attr(c, "name")?)?;
                    if l.allowed.insert(t) {
                        l.order.push(t);
                    }
                    if req {
                        l.required.push(t);
                    }
                }
                "group" => {
                    let t = self.tag(attr(c, "name")?)?;
                    let entry = self.layout(c, true, depth + 1)?;
                    let delimiter = *entry.order.first().ok_or_else(|| {
                        DictionaryError::Invalid(format!(
                            "group {} is empty",
                            attr(c, "name").unwrap_or("")
                        ))
                    })?;
                    if l.allowed.insert(t) {
                        l.order.push(t);
                    }
                    if req {
                        l.required.push(t);
                    }
                    l.groups.insert(
                        t,
                        Group {
                            delimiter,
                            layout: entry,
                        },
                    );
                }
                "component" => {
                    let name = attr(c, "name")?;
                    let comp = self.components.get(name).ok_or_else(|| {
                        DictionaryError::Invalid(format!("unknown component {name}"))
                    })?;
                    self.add(l, *comp, req, depth + 1)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// SessionRejectReason (373) values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RejectReason {
    /// 0: the tag is not defined.
    InvalidTagNumber = 0,
    /// 1.
    RequiredTagMissing = 1,
    /// 2.
    TagNotDefinedForMessageType = 2,
    /// 4.
    TagSpecifiedWithoutValue = 4,
    /// 5.
    ValueIncorrect = 5,
    /// 6.
    IncorrectDataFormat = 6,
    /// 9.
    CompIdProblem = 9,
    /// 10.
    SendingTimeAccuracy = 10,
    /// 11.
    InvalidMsgType = 11,
    /// 13.
    TagAppearsMoreThanOnce = 13,
    /// 14.
    TagOutOfOrder = 14,
    /// 16.
    IncorrectNumInGroupCount = 16,
}

impl RejectReason {
    /// The text QuickFIX-family engines put in Text (58).
    pub fn text(self) -> &'static str {
        match self {
            RejectReason::InvalidTagNumber => "Invalid tag number",
            RejectReason::RequiredTagMissing => "Required tag missing",
            RejectReason::TagNotDefinedForMessageType => "Tag not defined for this message type",
            RejectReason::TagSpecifiedWithoutValue => "Tag specified without a value",
            RejectReason::ValueIncorrect => "Value is incorrect (out of range) for this tag",
            RejectReason::IncorrectDataFormat => "Incorrect data format for value",
            RejectReason::CompIdProblem => "CompID problem",
            RejectReason::SendingTimeAccuracy => "SendingTime accuracy problem",
            RejectReason::InvalidMsgType => "Invalid MsgType",
            RejectReason::TagAppearsMoreThanOnce => "Tag appears more than once",
            RejectReason::TagOutOfOrder => "Tag specified out of required order",
            RejectReason::IncorrectNumInGroupCount => {
                "Incorrect NumInGroup count for repeating group"
            }
        }
    }
}

/// A validation failure: the reason and the tag it concerns (if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Why.
    pub reason: RejectReason,
    /// RefTagID.
    pub tag: Option<Tag>,
}

fn invalid(reason: RejectReason, tag: Tag) -> Invalid {
    Invalid {
        reason,
        tag: Some(tag),
    }
}

/// Fields of one level, inline up to a size no ordinary message exceeds: validation runs for
/// every inbound message and allocated a handful of vectors for each.
type LevelFields<'m, 'a> = SmallVec<[&'m Field<'a>; 32]>;

/// One level of a parsed message: its fields and the repeating groups found in it.
#[derive(Default)]
struct Level<'m, 'a> {
    fields: LevelFields<'m, 'a>,
    /// (NumInGroup field, its entries).
    groups: Vec<(&'m Field<'a>, Vec<Level<'m, 'a>>)>,
}

/// Reads one level of fields starting at `pos`. At the top level every field belongs; inside
/// a group entry, reading stops at a field the group does not define or one the entry already
/// has (which starts the next entry).
fn read_level<'m, 'a>(
    fs: &'m [Field<'a>],
    pos: &mut usize,
    layout: &Layout,
    top: bool,
) -> Level<'m, 'a> {
    let mut level = Level::default();
    while *pos < fs.len() {
        let f = &fs[*pos];
        if !top && (!layout.allowed.contains(f.tag) || level.fields.iter().any(|x| x.tag == f.tag))
        {
            break;
        }
        *pos += 1;
        level.fields.push(f);
        if layout.groups.is_empty() {
            continue;
        }
        if let Some(g) = layout.groups.get(&f.tag) {
            let mut entries = Vec::new();
            while *pos < fs.len() && fs[*pos].tag == g.delimiter {
                entries.push(read_level(fs, pos, &g.layout, false));
            }
            level.groups.push((f, entries));
        }
    }
    level
}

impl Dictionary {
    fn check_field(
        &self,
        f: &Field,
        msg_layout: Option<&Layout>,
        in_message: bool,
    ) -> Result<(), Invalid> {
        if f.value.is_empty() {
            return Err(invalid(RejectReason::TagSpecifiedWithoutValue, f.tag));
        }
        let Some(def) = self.field(f.tag) else {
            return Err(invalid(RejectReason::InvalidTagNumber, f.tag));
        };
        def.check_value(f.value).map_err(|r| invalid(r, f.tag))?;
        if in_message
            && let Some(l) = msg_layout
            && !l.allowed.contains(f.tag)
        {
            return Err(invalid(RejectReason::TagNotDefinedForMessageType, f.tag));
        }
        Ok(())
    }

    /// Checks one level's fields in tag order, then its groups.
    fn iterate(
        &self,
        level: &Level,
        layout: Option<&Layout>,
        in_message: bool,
    ) -> Result<(), Invalid> {
        let mut sorted = level.fields.clone();
        // Stable, so of two fields with one tag the first is checked first, as it came.
        sorted.sort_by_key(|f| f.tag);
        for (i, f) in sorted.iter().enumerate() {
            if i > 0 && sorted[i - 1].tag == f.tag {
                return Err(invalid(RejectReason::TagAppearsMoreThanOnce, f.tag));
            }
            self.check_field(f, layout, in_message)?;
            if let Some((count_field, entries)) = level.groups.iter().find(|(c, _)| c.tag == f.tag)
            {
                let declared = crate::codec::parse_uint(count_field.value);
                if declared != Some(entries.len() as u64) {
                    return Err(invalid(RejectReason::IncorrectNumInGroupCount, f.tag));
                }
                let g = layout.and_then(|l| l.groups.get(&f.tag));
                for e in entries {
                    self.iterate(e, g.map(|g| &g.layout), true)?;
                }
            }
        }
        Ok(())
    }
}

fn check_required(level: &Level, layout: &Layout) -> Result<(), Invalid> {
    for &t in &layout.required {
        if !level.fields.iter().any(|f| f.tag == t) {
            return Err(invalid(RejectReason::RequiredTagMissing, t));
        }
    }
    for (count, entries) in &level.groups {
        if let Some(g) = layout.groups.get(&count.tag) {
            for e in entries {
                check_required(e, &g.layout)?;
            }
        }
    }
    Ok(())
}

/// A message's header, body or trailer fields, inline up to an ordinary message's size.
type Section<'a> = SmallVec<[Field<'a>; 32]>;

/// Validates a message: `session` describes the header, trailer and session messages; `app`
/// the application message's body (the same dictionary for FIX.4.x sessions).
pub fn validate(msg: &Message, session: &Dictionary, app: &Dictionary) -> Result<(), Invalid> {
    // Structure: header fields first, then the body, then the trailer.
    let (mut header, mut body, mut trailer): (Section, Section, Section) = Default::default();
    let mut section = 0; // 0 header, 1 body, 2 trailer
    let mut out_of_order: Option<Tag> = None;
    for f in &msg.fields {
        let (target, s) = if session.is_header_field(f.tag) {
            (&mut header, 0)
        } else if session.is_trailer_field(f.tag) {
            (&mut trailer, 2)
        } else {
            (&mut body, 1)
        };
        if s < section && out_of_order.is_none() {
            out_of_order = Some(f.tag);
        }
        section = section.max(s);
        target.push(*f);
    }
    if let Some(t) = out_of_order {
        return Err(invalid(RejectReason::TagOutOfOrder, t));
    }
    let Some(def) = app.message(msg.msg_type()) else {
        return Err(Invalid {
            reason: RejectReason::InvalidMsgType,
            tag: None,
        });
    };
    let header = read_level(&header, &mut 0, &session.header, true);
    let trailer = read_level(&trailer, &mut 0, &session.trailer, true);
    let body = read_level(&body, &mut 0, &def.body, true);
    check_required(&header, &session.header)?;
    check_required(&trailer, &session.trailer)?;
    check_required(&body, &def.body)?;
    session.iterate(&header, Some(&session.header), false)?;
    session.iterate(&trailer, Some(&session.trailer), false)?;
    app.iterate(&body, Some(&def.body), true)?;
    Ok(())
}

/// Message shapes (a MsgType and its tags in order) that passed every check of [`validate`]
/// other than the values': what validation concludes about a message's structure (order of
/// header, body and trailer, required fields, fields defined for the message type, repeated
/// tags) depends on its shape alone, so a message of a known shape needs only its values
/// checked. A session keeps one: its messages come in a few shapes (an order, a cancel, a
/// heartbeat), and the structural part was about two thirds of validating them.
#[derive(Debug, Default)]
pub struct ShapeCache {
    shapes: Vec<Shape>,
    /// The shape the next new one replaces once the cache is full.
    next: usize,
}

#[derive(Debug)]
struct Shape {
    msg_type: SmallVec<[u8; 4]>,
    /// Each field's tag and what its value needs.
    fields: Vec<(Tag, ValueCheck)>,
}

/// What the value of a field in a known shape is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueCheck {
    /// Free text: any non-empty value (most header fields, identifiers, symbols).
    Any,
    /// The session dictionary's definition (a header or trailer field).
    Session,
    /// The application dictionary's definition (a body field).
    App,
}

impl ShapeCache {
    /// Shapes kept per cache.
    const CAPACITY: usize = 8;

    fn find(&self, msg: &Message) -> Option<&Shape> {
        let msg_type = msg.msg_type();
        self.shapes.iter().find(|s| {
            s.fields.len() == msg.fields.len()
                && s.msg_type.as_slice() == msg_type
                && s.fields
                    .iter()
                    .zip(&msg.fields)
                    .all(|(&(t, _), f)| t == f.tag)
        })
    }

    fn insert(&mut self, shape: Shape) {
        if self.shapes.len() < Self::CAPACITY {
            self.shapes.push(shape);
        } else {
            self.shapes[self.next] = shape;
            self.next = (self.next + 1) % Self::CAPACITY;
        }
    }

    /// Number of shapes held.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    /// Whether no shape is held.
    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }
}

/// [`validate`], skipping the structural checks for a message whose shape passed them
/// before. The answer is always the one [`validate`] gives: when a value fails, the message
/// goes through the full validation, which reports the fault it finds first. Messages with
/// repeating groups are not cached (whether their entries match the declared counts depends
/// on values).
pub fn validate_cached(
    msg: &Message,
    session: &Dictionary,
    app: &Dictionary,
    cache: &mut ShapeCache,
) -> Result<(), Invalid> {
    if let Some(shape) = cache.find(msg) {
        let values_ok = shape
            .fields
            .iter()
            .zip(&msg.fields)
            .all(|(&(_, check), f)| {
                let dict = match check {
                    ValueCheck::Any => None,
                    ValueCheck::Session => Some(session),
                    ValueCheck::App => Some(app),
                };
                !f.value.is_empty()
                    && dict.is_none_or(|d| {
                        d.field(f.tag)
                            .is_some_and(|def| def.check_value(f.value).is_ok())
                    })
            });
        return if values_ok {
            Ok(())
        } else {
            validate(msg, session, app)
        };
    }
    validate(msg, session, app)?;
    let body_layout = app.message(msg.msg_type()).map(|d| &d.body);
    let has_groups = msg.fields.iter().any(|f| {
        session.header.groups.contains_key(&f.tag)
            || session.trailer.groups.contains_key(&f.tag)
            || body_layout.is_some_and(|l| l.groups.contains_key(&f.tag))
    });
    if !has_groups {
        let fields = msg
            .fields
            .iter()
            .map(|f| {
                let (dict, check) =
                    if session.is_header_field(f.tag) || session.is_trailer_field(f.tag) {
                        (session, ValueCheck::Session)
                    } else {
                        (app, ValueCheck::App)
                    };
                let free = dict.field(f.tag).is_some_and(|d| {
                    d.values.is_none()
                        && matches!(d.ftype, FieldType::Text | FieldType::MultipleValue)
                });
                (f.tag, if free { ValueCheck::Any } else { check })
            })
            .collect();
        cache.insert(Shape {
            msg_type: SmallVec::from_slice(msg.msg_type()),
            fields,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DICT: &str = r#"<fix type='FIX' major='4' minor='4' servicepack='0'>
 <header>
  <field name='BeginString' required='Y'/><field name='BodyLength' required='Y'/><field name='MsgType' required='Y'/>
  <field name='SenderCompID' required='Y'/><field name='TargetCompID' required='Y'/><field name='MsgSeqNum' required='Y'/>
  <field name='SendingTime' required='Y'/>
 </header>
 <trailer><field name='CheckSum' required='Y'/></trailer>
 <messages>
  <message name='Heartbeat' msgtype='0' msgcat='admin'><field name='TestReqID' required='N'/></message>
  <message name='NewOrderSingle' msgtype='D' msgcat='app'>
   <field name='ClOrdID' required='Y'/>
   <component name='Instrument' required='Y'/>
   <group name='NoTradingSessions' required='N'><field name='TradingSessionID' required='N'/><field name='TradingSessionSubID' required='N'/></group>
   <field name='Side' required='Y'/><field name='OrderQty' required='N'/><field name='Venue' required='N'/>
  </message>
 </messages>
 <components><component name='Instrument'><field name='Symbol' required='Y'/></component></components>
 <fields>
  <field number='8' name='BeginString' type='STRING'/><field number='9' name='BodyLength' type='LENGTH'/>
  <field number='10' name='CheckSum' type='STRING'/><field number='11' name='ClOrdID' type='STRING'/>
  <field number='34' name='MsgSeqNum' type='SEQNUM'/><field number='35' name='MsgType' type='STRING'/>
  <field number='38' name='OrderQty' type='QTY'/><field number='49' name='SenderCompID' type='STRING'/>
  <field number='52' name='SendingTime' type='UTCTIMESTAMP'/>
  <field number='54' name='Side' type='CHAR'><value enum='1' description='BUY'/><value enum='2' description='SELL'/></field>
  <field number='55' name='Symbol' type='STRING'/><field number='56' name='TargetCompID' type='STRING'/>
  <field number='112' name='TestReqID' type='STRING'/><field number='336' name='TradingSessionID' type='STRING'/>
  <field number='386' name='NoTradingSessions' type='NUMINGROUP'/><field number='625' name='TradingSessionSubID' type='STRING'/>
  <field number='20001' name='Venue' type='STRING'><value enum='X'/><value enum='YZ'/></field>
 </fields>
</fix>"#;

    fn msg(body: &str) -> Vec<u8> {
        let mut e = crate::codec::Encoder::new();
        let mut parts = body.split('|').filter(|s| !s.is_empty());
        let first = parts.next().unwrap();
        e.start(first.strip_prefix("35=").unwrap().as_bytes());
        for p in parts {
            let (t, v) = p.split_once('=').unwrap();
            e.field(t.parse().unwrap(), v.as_bytes());
        }
        e.finish(b"FIX.4.4").to_vec()
    }

    fn check(body: &str) -> Result<(), Invalid> {
        let d = Dictionary::parse(DICT).unwrap();
        let raw = msg(body);
        let m = Message::parse(&raw).unwrap();
        validate(&m, &d, &d)
    }

    const H: &str = "34=2|49=A|52=20240101-00:00:00|56=B|";

    #[test]
    fn each_fault_gets_its_reason_and_tag() {
        assert_eq!(check(&format!("35=D|{H}11=x|55=X|54=1|")), Ok(()));
        assert_eq!(
            check(&format!("35=D|{H}11=x|55=X|54=1|386=2|336=A|336=B|")),
            Ok(())
        );
        // A user-defined tag beyond the flat tables, with one- and two-character values.
        for v in ["X", "YZ"] {
            assert_eq!(check(&format!("35=D|{H}11=x|55=X|54=1|20001={v}|")), Ok(()));
        }
        let cases = [
            (
                format!("35=D|{H}55=X|54=1|"),
                RejectReason::RequiredTagMissing,
                Some(11),
            ),
            (
                format!("35=D|{H}11=x|54=1|"),
                RejectReason::RequiredTagMissing,
                Some(55),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=3|"),
                RejectReason::ValueIncorrect,
                Some(54),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=1|38=+1|"),
                RejectReason::IncorrectDataFormat,
                Some(38),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=1|54=2|"),
                RejectReason::TagAppearsMoreThanOnce,
                Some(54),
            ),
            // Of a repeated tag, the first is checked before the repeat is noticed.
            (
                format!("35=D|{H}11=x|55=X|54=3|54=1|"),
                RejectReason::ValueIncorrect,
                Some(54),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=1|54=3|"),
                RejectReason::TagAppearsMoreThanOnce,
                Some(54),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=1|20001=Y|"),
                RejectReason::ValueIncorrect,
                Some(20001),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=1|20002=Y|"),
                RejectReason::InvalidTagNumber,
                Some(20002),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=1|386=3|336=A|336=B|"),
                RejectReason::IncorrectNumInGroupCount,
                Some(386),
            ),
            (
                format!("35=D|{H}11=x|55=X|54=1|999=1|"),
                RejectReason::InvalidTagNumber,
                Some(999),
            ),
            (
                format!("35=0|{H}55=X|"),
                RejectReason::TagNotDefinedForMessageType,
                Some(55),
            ),
            (
                format!("35=0|{H}112=|"),
                RejectReason::TagSpecifiedWithoutValue,
                Some(112),
            ),
            (
                "35=D|11=x|34=2|49=A|52=20240101-00:00:00|56=B|55=X|54=1|".to_string(),
                RejectReason::TagOutOfOrder,
                Some(34),
            ),
            (format!("35=*|{H}"), RejectReason::InvalidMsgType, None),
            (
                "35=0|34=2|49=A|52=20240101-00:00:00|".to_string(),
                RejectReason::RequiredTagMissing,
                Some(56),
            ),
        ];
        for (m, reason, tag) in cases {
            assert_eq!(check(&m), Err(Invalid { reason, tag }), "{m}");
        }
    }

    #[test]
    fn the_shape_cache_answers_as_full_validation_does() {
        let d = Dictionary::parse(DICT).unwrap();
        let mut cache = ShapeCache::default();
        let run = |cache: &mut ShapeCache, body: &str| {
            let raw = msg(body);
            let m = Message::parse(&raw).unwrap();
            let cached = validate_cached(&m, &d, &d, cache);
            assert_eq!(cached, validate(&m, &d, &d), "{body}");
            cached
        };
        // Each pair: a valid message, then one of the same shape whose values are wrong.
        let pairs = [
            (
                "11=x|55=X|54=1|",
                "11=x|55=X|54=3|",
                RejectReason::ValueIncorrect,
                54,
            ),
            (
                "11=x|55=X|54=1|38=1|",
                "11=x|55=X|54=1|38=+1|",
                RejectReason::IncorrectDataFormat,
                38,
            ),
            (
                "11=x|55=X|54=1|38=1|",
                "11=|55=X|54=1|38=1|",
                RejectReason::TagSpecifiedWithoutValue,
                11,
            ),
            (
                "11=x|55=X|54=1|20001=YZ|",
                "11=x|55=X|54=1|20001=Y|",
                RejectReason::ValueIncorrect,
                20001,
            ),
        ];
        for (good, bad, reason, tag) in pairs {
            for _ in 0..2 {
                assert_eq!(run(&mut cache, &format!("35=D|{H}{good}")), Ok(()));
                let err = Err(Invalid {
                    reason,
                    tag: Some(tag),
                });
                assert_eq!(run(&mut cache, &format!("35=D|{H}{bad}")), err, "{bad}");
            }
        }
        // A header value is checked against the session dictionary's definition.
        let bad_time = "35=D|34=2|49=A|52=20241301-00:00:00|56=B|11=x|55=X|54=1|";
        assert_eq!(run(&mut cache, bad_time).unwrap_err().tag, Some(52));
        // The same tags under another MsgType are another shape.
        assert_eq!(
            run(&mut cache, &format!("35=*|{H}11=x|55=X|54=1|"))
                .unwrap_err()
                .reason,
            RejectReason::InvalidMsgType
        );
        assert_eq!(cache.len(), 3);
        // Messages with groups are never cached: their counts are values.
        let group = format!("35=D|{H}11=x|55=X|54=1|386=2|336=A|336=B|");
        assert_eq!(run(&mut cache, &group), Ok(()));
        assert_eq!(
            run(
                &mut cache,
                &format!("35=D|{H}11=x|55=X|54=1|386=3|336=A|336=B|")
            )
            .unwrap_err()
            .reason,
            RejectReason::IncorrectNumInGroupCount
        );
        assert_eq!(cache.len(), 3);
        // Beyond its capacity the cache replaces shapes and still answers the same.
        let extra = [
            "11=x|55=X|54=1|38=1|20001=X|",
            "11=x|55=X|54=1|20001=X|38=1|",
            "11=x|54=1|55=X|",
            "55=X|11=x|54=1|",
            "54=1|11=x|55=X|",
            "54=1|55=X|11=x|",
            "55=X|54=1|11=x|",
            "38=5|11=x|54=1|55=X|",
        ];
        for body in extra {
            assert_eq!(run(&mut cache, &format!("35=D|{H}{body}")), Ok(()));
        }
        assert_eq!(cache.len(), ShapeCache::CAPACITY);
        assert_eq!(run(&mut cache, &format!("35=D|{H}11=x|55=X|54=1|")), Ok(()));
        assert_eq!(
            run(&mut cache, &format!("35=D|{H}11=x|55=X|54=1|54=1|"))
                .unwrap_err()
                .reason,
            RejectReason::TagAppearsMoreThanOnce
        );
    }

    #[test]
    fn the_shared_acceptance_dictionaries_load() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fix-at/spec");
        if !dir.exists() {
            return;
        }
        let d = Dictionary::load(&dir.join("FIX44.xml")).unwrap();
        assert_eq!(d.version, "FIX.4.4");
        assert_eq!(d.message(b"D").unwrap().name, "NewOrderSingle");
        let t = Dictionary::load(&dir.join("FIXT11.xml")).unwrap();
        assert!(t.transport);
        assert_eq!(t.version, "FIXT.1.1");
        let a = Dictionary::load(&dir.join("FIX50SP2.xml")).unwrap();
        assert_eq!(a.version, "FIX.5.0SP2");
    }
}
