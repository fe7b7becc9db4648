//! Asterisk call detail records: the lines `cdr_csv` appends to `Master.csv`, one per call,
//! stored one raw record per line by the call-log connector (`omni-calllog`).
//!
//! The line format is `build_csv_record` in Asterisk's `cdr/cdr_csv.c`: the columns
//! [`BASE_COLUMNS`] (accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
//! lastdata, start, answer, end, duration, billsec, disposition, amaflags), then `uniqueid` when
//! `loguniqueid = yes`, `userfield` when `loguserfield = yes`, and `peeraccount`, `linkedid`,
//! `sequence` when `newcdrcolumns = yes` (all in `[csv]` of `cdr.conf`). Text columns are in
//! double quotes with inner quotes doubled (`"""Ayşe Yılmaz"" <905551112233>"`); `duration`,
//! `billsec` and `sequence` are bare integers; a time that is not set (`answer` of an unanswered
//! call) is an empty, unquoted column. Times are `YYYY-MM-DD HH:MM:SS` in the PBX's local time,
//! or in UTC with `usegmtime = yes`. The line ends with `\n`.
//!
//! A CDR line carries nothing about the file it came from, so the connector puts what is needed
//! to read it into the raw record's attributes ([`CdrSettings::attributes`]): the column list,
//! the time zone of the times, the contexts that mean "inbound", trunk channel prefixes and the
//! business number. Without them (a record written by something else) the columns are inferred
//! from their number, times are read as UTC and the default inbound contexts apply.
//!
//! Reading a call:
//! - direction: inbound when `dcontext` is one of `inbound_contexts` (default
//!   [`DEFAULT_INBOUND_CONTEXTS`]) or `channel` starts with one of `trunk_prefixes` (for dial
//!   plans where inbound calls end in other contexts, such as FreePBX queues); else outbound;
//! - the customer is `src` on inbound calls (with the name from `clid`) and `dst` on outbound
//!   ones; the business number is `business_number` when configured, else `dst` on inbound and
//!   `src` on outbound calls. Numbers become E.164 where they parse (a leading international
//!   `00` is read as `+`);
//! - an outbound call to a number of fewer than 7 digits is a call between extensions or a
//!   feature code: no event (`None`);
//! - outcome: `ANSWERED` -> answered, `NO ANSWER` -> missed, `BUSY` -> busy, `FAILED` and
//!   `CONGESTION` -> failed; whatever the disposition, a call whose last application was
//!   `VoiceMail` is a voicemail (its `recording_reference` is the mailbox, `1001@default`);
//! - `duration` is `billsec` (talk time), `started_at` is `start`, the agent is the peer of
//!   `dstchannel` on answered inbound calls (`PJSIP/alice-0000001f` -> `alice`) and of `channel`
//!   on outbound calls, `call_id` is `uniqueid`.
//!
//! Ids:
//! - event id: over the account and the provider message id `uniqueid/sequence` (or
//!   `uniqueid/dstchannel` without `newcdrcolumns`, since one call can log several lines with one
//!   `uniqueid`), or over the exact line bytes when the file has no `uniqueid` column; a line read
//!   twice (after a crash, a rotation) has the same id either way;
//! - conversation id: over the account, the business number and the customer's number, so every
//!   call of one customer to one number continues one conversation; a caller without a number
//!   (anonymous) gets a conversation of the call's own;
//! - partition key: the same fields as the conversation id.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use chrono::{FixedOffset, NaiveDateTime};
use omni_proto::v1::call_data::Outcome;
use omni_proto::v1::contact_identifier::Kind;
use omni_proto::v1::participant::Role;
use omni_proto::v1::{Body, CallData, Channel, ContactIdentifier, ConversationEvent, Direction, Participant, ProviderReference, RawRecord};

use crate::webhook::{phone_number as phone, text};
use crate::{KnownEvents, Normalize, NormalizeError, ids};

/// The `provider` of raw records holding Asterisk CDR lines.
pub const PROVIDER: &str = "asterisk";
/// The channel name in ids.
pub const ID_CHANNEL: &str = "voice";
/// The raw records' `content_type`.
pub const CONTENT_TYPE: &str = "text/csv";

/// Attribute: the line's columns, comma-separated, in order (`accountcode,src,...,userfield`).
pub const COLUMNS_ATTRIBUTE: &str = "cdr_columns";
/// Attribute: the time zone of the line's times: `UTC`, or a fixed offset such as `+03:00`.
pub const TIMEZONE_ATTRIBUTE: &str = "cdr_timezone";
/// Attribute: the `dcontext` values of inbound calls, comma-separated.
pub const INBOUND_CONTEXTS_ATTRIBUTE: &str = "cdr_inbound_contexts";
/// Attribute: prefixes of trunk channels (a call whose `channel` starts with one is inbound), comma-separated.
pub const TRUNK_PREFIXES_ATTRIBUTE: &str = "cdr_trunk_prefixes";
/// Attribute: the business number every call of the file is for, when configured.
pub const BUSINESS_NUMBER_ATTRIBUTE: &str = "cdr_business_number";
/// Attribute: `true` when the payload is not a whole line (no newline was ever written after it).
pub const INCOMPLETE_ATTRIBUTE: &str = "cdr_incomplete";
/// Attribute: the path of the file the line was read from (for people; not used to normalize).
pub const FILE_ATTRIBUTE: &str = "cdr_file";
/// Attribute: the byte offset of the line in that file (for people; not used to normalize).
pub const OFFSET_ATTRIBUTE: &str = "cdr_offset";

/// The columns `cdr_csv` always writes, in order.
pub const BASE_COLUMNS: [&str; 16] = [
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
];

/// The columns every line needs for a call to be read.
const REQUIRED_COLUMNS: [&str; 11] = [
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "billsec",
    "disposition",
];

/// Every column name a line may have.
const KNOWN_COLUMNS: [&str; 21] = [
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
    "peeraccount",
    "linkedid",
    "sequence",
];

/// The `dcontext` values of inbound calls when none are configured: the contexts trunks deliver
/// calls to in Asterisk's sample configuration and in FreePBX.
pub const DEFAULT_INBOUND_CONTEXTS: [&str; 3] = ["from-external", "from-trunk", "from-pstn"];

/// The columns of a `Master.csv` written with these `[csv]` options of `cdr.conf`.
pub fn columns(loguniqueid: bool, loguserfield: bool, newcdrcolumns: bool) -> Vec<String> {
    let mut columns: Vec<String> = BASE_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    if loguniqueid {
        columns.push("uniqueid".into());
    }
    if loguserfield {
        columns.push("userfield".into());
    }
    if newcdrcolumns {
        columns.extend(["peeraccount", "linkedid", "sequence"].map(String::from));
    }
    columns
}

/// The columns of a line with `count` fields when nothing says which options wrote it; with 17
/// fields the extra one is taken for `uniqueid` (`loguniqueid` is the option usually turned on).
fn inferred_columns(count: usize) -> Option<Vec<String>> {
    Some(match count {
        16 => columns(false, false, false),
        17 => columns(true, false, false),
        18 => columns(true, true, false),
        19 => columns(false, false, true),
        20 => columns(true, false, true),
        21 => columns(true, true, true),
        _ => return None,
    })
}

/// A time zone of CDR times: UTC or a fixed offset from it, in seconds east.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timezone {
    offset_seconds: i32,
}

impl Timezone {
    /// UTC (`usegmtime = yes`).
    pub const UTC: Timezone = Timezone { offset_seconds: 0 };

    /// Parses `UTC` (or `GMT`, `Z`) or a fixed offset `+HH:MM`, `-HH:MM`, `+HHMM`, `+HH`.
    pub fn parse(value: &str) -> Result<Timezone, String> {
        let value = value.trim();
        if ["UTC", "GMT", "Z"].iter().any(|utc| value.eq_ignore_ascii_case(utc)) {
            return Ok(Timezone::UTC);
        }
        let problem = || format!("`{value}` is not UTC or an offset such as +03:00 or -05:00");
        let (sign, rest) = match value.as_bytes().first() {
            Some(b'+') => (1, &value[1..]),
            Some(b'-') => (-1, &value[1..]),
            _ => return Err(problem()),
        };
        let digits: String = rest.chars().filter(|c| *c != ':').collect();
        let shape_ok = match rest.len() {
            2 | 4 => digits.len() == rest.len(),
            5 => digits.len() == 4 && rest.as_bytes()[2] == b':',
            _ => false,
        };
        if !shape_ok || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(problem());
        }
        let hours: i32 = digits[..2].parse().map_err(|_| problem())?;
        let minutes: i32 = if digits.len() == 4 {
            digits[2..].parse().map_err(|_| problem())?
        } else {
            0
        };
        if hours > 14 || minutes > 59 {
            return Err(problem());
        }
        Ok(Timezone {
            offset_seconds: sign * (hours * 3600 + minutes * 60),
        })
    }

    /// Seconds east of UTC.
    pub fn offset_seconds(self) -> i32 {
        self.offset_seconds
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.offset_seconds == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.offset_seconds < 0 { '-' } else { '+' };
        let minutes = self.offset_seconds.abs() / 60;
        write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// How to read the lines of one CDR file: what the connector knows from its configuration and
/// passes to the normalizer in the raw record's attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdrSettings {
    /// The columns, in order; `None`: inferred from the number of fields.
    pub columns: Option<Vec<String>>,
    /// The time zone of `start`.
    pub timezone: Timezone,
    /// `dcontext` values of inbound calls.
    pub inbound_contexts: Vec<String>,
    /// Channel name prefixes of trunks (`PJSIP/trunk-`): a call from one is inbound.
    pub trunk_prefixes: Vec<String>,
    /// The business number every call is for; `None`: `dst` of inbound, `src` of outbound calls.
    pub business_number: Option<String>,
}

impl Default for CdrSettings {
    fn default() -> Self {
        Self {
            columns: None,
            timezone: Timezone::UTC,
            inbound_contexts: DEFAULT_INBOUND_CONTEXTS.iter().map(|c| (*c).to_owned()).collect(),
            trunk_prefixes: Vec::new(),
            business_number: None,
        }
    }
}

impl CdrSettings {
    /// The raw record attributes that carry these settings.
    pub fn attributes(&self) -> Vec<(String, String)> {
        let mut attributes = vec![
            (TIMEZONE_ATTRIBUTE.to_owned(), self.timezone.to_string()),
            (INBOUND_CONTEXTS_ATTRIBUTE.to_owned(), self.inbound_contexts.join(",")),
        ];
        if let Some(columns) = &self.columns {
            attributes.push((COLUMNS_ATTRIBUTE.to_owned(), columns.join(",")));
        }
        if !self.trunk_prefixes.is_empty() {
            attributes.push((TRUNK_PREFIXES_ATTRIBUTE.to_owned(), self.trunk_prefixes.join(",")));
        }
        if let Some(number) = &self.business_number {
            attributes.push((BUSINESS_NUMBER_ATTRIBUTE.to_owned(), number.clone()));
        }
        attributes
    }

    /// Reads the settings from a raw record's attributes; absent ones take their defaults.
    pub fn from_attributes(attributes: &HashMap<String, String>) -> Result<CdrSettings, String> {
        let list = |name: &str| -> Option<Vec<String>> {
            attributes.get(name).map(|value| {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
        };
        let mut settings = CdrSettings::default();
        if let Some(columns) = list(COLUMNS_ATTRIBUTE) {
            check_columns(&columns)?;
            settings.columns = Some(columns);
        }
        if let Some(timezone) = attributes.get(TIMEZONE_ATTRIBUTE) {
            settings.timezone = Timezone::parse(timezone).map_err(|problem| format!("attribute `{TIMEZONE_ATTRIBUTE}`: {problem}"))?;
        }
        if let Some(contexts) = list(INBOUND_CONTEXTS_ATTRIBUTE) {
            settings.inbound_contexts = contexts;
        }
        if let Some(prefixes) = list(TRUNK_PREFIXES_ATTRIBUTE) {
            settings.trunk_prefixes = prefixes;
        }
        settings.business_number = attributes
            .get(BUSINESS_NUMBER_ATTRIBUTE)
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        Ok(settings)
    }
}

/// Checks a column list: known names, each once, with every column a call needs.
pub fn check_columns(columns: &[String]) -> Result<(), String> {
    for (index, column) in columns.iter().enumerate() {
        if !KNOWN_COLUMNS.contains(&column.as_str()) {
            return Err(format!("unknown CDR column `{column}`"));
        }
        if columns[..index].contains(column) {
            return Err(format!("CDR column `{column}` is listed twice"));
        }
    }
    for required in REQUIRED_COLUMNS {
        if !columns.iter().any(|c| c == required) {
            return Err(format!("CDR column `{required}` is missing"));
        }
    }
    Ok(())
}

/// One call detail record, as `cdr_csv` wrote it (columns the file does not have are empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cdr {
    /// `accountcode`.
    pub accountcode: String,
    /// `src`: the caller's number.
    pub src: String,
    /// `dst`: the extension dialled (the DID of an inbound call, the number of an outbound one).
    pub dst: String,
    /// `dcontext`: the dial plan context the call ended in.
    pub dcontext: String,
    /// `clid`: the caller id with name, `"Name" <number>`.
    pub clid: String,
    /// `channel`: the calling channel.
    pub channel: String,
    /// `dstchannel`: the called channel, when one was dialled.
    pub dstchannel: String,
    /// `lastapp`: the last dial plan application (`Dial`, `VoiceMail`, `Queue`, ...).
    pub lastapp: String,
    /// `lastdata`: its arguments.
    pub lastdata: String,
    /// `start`, as written.
    pub start: String,
    /// `answer`, as written; empty when unanswered.
    pub answer: String,
    /// `end`, as written.
    pub end: String,
    /// `duration`: seconds from start to end.
    pub duration: u64,
    /// `billsec`: seconds from answer to end.
    pub billsec: u64,
    /// `disposition`: `ANSWERED`, `NO ANSWER`, `BUSY`, `FAILED`, `CONGESTION`.
    pub disposition: String,
    /// `amaflags`.
    pub amaflags: String,
    /// `uniqueid`, when logged.
    pub uniqueid: String,
    /// `userfield`, when logged.
    pub userfield: String,
    /// `peeraccount`, when logged.
    pub peeraccount: String,
    /// `linkedid`, when logged.
    pub linkedid: String,
    /// `sequence`, when logged.
    pub sequence: Option<u64>,
}

impl Cdr {
    /// The provider's id of this record: `uniqueid/sequence`, else `uniqueid/dstchannel`, else
    /// `uniqueid`; `None` when the file has no `uniqueid`.
    pub fn message_id(&self) -> Option<String> {
        if self.uniqueid.is_empty() {
            return None;
        }
        Some(match (self.sequence, self.dstchannel.is_empty()) {
            (Some(sequence), _) => format!("{}/{sequence}", self.uniqueid),
            (None, false) => format!("{}/{}", self.uniqueid, self.dstchannel),
            (None, true) => self.uniqueid.clone(),
        })
    }
}

/// A field as text: UTF-8, else Latin-1 (a trunk's caller name in a legacy charset).
fn field_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.iter().map(|b| char::from(*b)).collect(),
    }
}

/// Parses one line (with or without its newline) with the given columns, or with columns
/// inferred from the number of fields when `columns` is `None`.
pub fn parse_line(line: &[u8], columns: Option<&[String]>) -> Result<Cdr, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty line".into());
    }
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(line);
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return Err("empty line".into()),
        Err(error) => return Err(format!("not CSV: {error}")),
    }
    let mut rest = csv::ByteRecord::new();
    if !matches!(reader.read_byte_record(&mut rest), Ok(false)) {
        return Err("more than one CSV record in one line".into());
    }
    let inferred;
    let columns = match columns {
        Some(columns) => columns,
        None => {
            inferred =
                inferred_columns(record.len()).ok_or_else(|| format!("{} fields: not a cdr_csv line (16 to 21 fields)", record.len()))?;
            &inferred
        }
    };
    if record.len() != columns.len() {
        return Err(format!("{} fields where the file has {} columns", record.len(), columns.len()));
    }
    let mut cdr = Cdr::default();
    for (column, value) in columns.iter().zip(record.iter()) {
        let text = field_text(value);
        let number = |text: &str| -> Result<u64, String> {
            text.trim()
                .parse::<u64>()
                .map_err(|_| format!("`{column}` is not a number of seconds"))
        };
        match column.as_str() {
            "accountcode" => cdr.accountcode = text,
            "src" => cdr.src = text,
            "dst" => cdr.dst = text,
            "dcontext" => cdr.dcontext = text,
            "clid" => cdr.clid = text,
            "channel" => cdr.channel = text,
            "dstchannel" => cdr.dstchannel = text,
            "lastapp" => cdr.lastapp = text,
            "lastdata" => cdr.lastdata = text,
            "start" => cdr.start = text,
            "answer" => cdr.answer = text,
            "end" => cdr.end = text,
            "duration" => cdr.duration = number(&text)?,
            "billsec" => cdr.billsec = number(&text)?,
            "disposition" => cdr.disposition = text,
            "amaflags" => cdr.amaflags = text,
            "uniqueid" => cdr.uniqueid = text,
            "userfield" => cdr.userfield = text,
            "peeraccount" => cdr.peeraccount = text,
            "linkedid" => cdr.linkedid = text,
            "sequence" => cdr.sequence = Some(number(&text).map_err(|_| "`sequence` is not a number".to_owned())?),
            other => return Err(format!("unknown CDR column `{other}`")),
        }
    }
    if cdr.start.is_empty() {
        return Err("`start` is empty".into());
    }
    parse_time(&cdr.start, Timezone::UTC).map_err(|problem| format!("`start`: {problem}"))?;
    if cdr.disposition.is_empty() {
        return Err("`disposition` is empty".into());
    }
    Ok(cdr)
}

/// Parses `YYYY-MM-DD HH:MM:SS` in `timezone` into Unix seconds.
pub fn parse_time(value: &str, timezone: Timezone) -> Result<i64, String> {
    let problem = || format!("`{value}` is not a YYYY-MM-DD HH:MM:SS time");
    // chrono also takes one-digit fields, a signed year and leading white space: cdr_csv
    // writes none of them, so anything but the exact shape is refused first.
    const SHAPE: &[u8; 19] = b"0000-00-00 00:00:00";
    let shaped = value.len() == SHAPE.len()
        && value
            .bytes()
            .zip(SHAPE)
            .all(|(byte, &shape)| if shape == b'0' { byte.is_ascii_digit() } else { byte == shape });
    if !shaped {
        return Err(problem());
    }
    let local = NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S").map_err(|_| problem())?;
    let offset = FixedOffset::east_opt(timezone.offset_seconds()).ok_or_else(problem)?;
    let at = local.and_local_timezone(offset).single().ok_or_else(problem)?;
    Ok(at.timestamp())
}

/// The name and number of a caller id `"Name" <number>` (either may be missing).
pub fn split_clid(clid: &str) -> (String, String) {
    let clid = clid.trim();
    let (name, number) = match (clid.rfind('<'), clid.ends_with('>')) {
        (Some(open), true) => (&clid[..open], &clid[open + 1..clid.len() - 1]),
        _ if clid.chars().any(|c| c.is_ascii_digit()) && clid.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c)) => ("", clid),
        _ => (clid, ""),
    };
    let name = name.trim();
    let name = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')).unwrap_or(name).trim();
    (name.to_owned(), number.trim().to_owned())
}

fn digit_count(number: &str) -> usize {
    number.chars().filter(char::is_ascii_digit).count()
}

/// The peer of a channel name: `PJSIP/alice-0000001f` -> `alice`, `SIP/1002-00000002` -> `1002`,
/// `Local/1002@from-internal-00000003;1` -> `1002@from-internal`.
pub fn channel_peer(channel: &str) -> String {
    let Some((_, rest)) = channel.split_once('/') else {
        return String::new();
    };
    let rest = rest.split(';').next().unwrap_or(rest);
    match rest.rsplit_once('-') {
        Some((peer, suffix)) if !peer.is_empty() && !suffix.is_empty() && suffix.chars().all(|c| c.is_ascii_hexdigit()) => peer.to_owned(),
        _ => rest.to_owned(),
    }
}

/// A CDR read as a call between a customer and the business.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallView {
    /// Inbound (the customer called) or outbound.
    pub direction: Direction,
    /// The customer's number as written (`src` inbound, `dst` outbound).
    pub customer_number: String,
    /// The customer's name from `clid` (inbound calls only).
    pub customer_name: String,
    /// The business number: configured, else `dst` inbound, `src` outbound.
    pub business_number: String,
    /// Whether this is a call between extensions (an outbound call to fewer than 7 digits).
    pub internal: bool,
}

impl CallView {
    /// Reads a CDR with the file's settings.
    pub fn of(cdr: &Cdr, settings: &CdrSettings) -> CallView {
        let inbound = settings.inbound_contexts.iter().any(|c| c.eq_ignore_ascii_case(&cdr.dcontext))
            || settings.trunk_prefixes.iter().any(|p| cdr.channel.starts_with(p.as_str()));
        let (clid_name, clid_number) = split_clid(&cdr.clid);
        if inbound {
            let number = if cdr.src.trim().is_empty() {
                clid_number
            } else {
                cdr.src.trim().to_owned()
            };
            CallView {
                direction: Direction::Inbound,
                customer_number: number,
                customer_name: clid_name,
                business_number: settings.business_number.clone().unwrap_or_else(|| cdr.dst.trim().to_owned()),
                internal: false,
            }
        } else {
            let number = cdr.dst.trim().to_owned();
            CallView {
                direction: Direction::Outbound,
                internal: digit_count(&number) < 7,
                customer_number: number,
                customer_name: String::new(),
                business_number: settings.business_number.clone().unwrap_or_else(|| cdr.src.trim().to_owned()),
            }
        }
    }

    /// The customer's number as used in ids: E.164 where it parses; empty for an anonymous caller.
    pub fn customer_key(&self) -> String {
        if digit_count(&self.customer_number) == 0 {
            String::new()
        } else {
            phone(&self.customer_number)
        }
    }

    /// The business number as used in ids.
    pub fn business_key(&self) -> String {
        phone(&self.business_number)
    }
}

/// The ids of one line, computed the same way by the connector and the normalizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineIds {
    /// Deterministic event id.
    pub event_id: String,
    /// The provider's id of the record (see [`Cdr::message_id`]); empty when none.
    pub provider_message_id: String,
    /// The conversation id; `None` when the line cannot be read.
    pub conversation_id: Option<String>,
    /// The raw record's key: over the conversation's fields (over the account alone for a line
    /// that cannot be read).
    pub partition_key: String,
}

/// The ids of a line of `account`'s file.
pub fn line_ids(account: &str, line: &[u8], settings: &CdrSettings) -> LineIds {
    match parse_line(line, settings.columns.as_deref()) {
        Ok(cdr) => ids_of(account, line, &cdr, &CallView::of(&cdr, settings)),
        Err(_) => LineIds {
            event_id: ids::event_id(ID_CHANNEL, account, None, line),
            provider_message_id: String::new(),
            conversation_id: None,
            partition_key: ids::partition_key(&[ID_CHANNEL, account]),
        },
    }
}

fn ids_of(account: &str, line: &[u8], cdr: &Cdr, view: &CallView) -> LineIds {
    let message_id = cdr.message_id();
    let event_id = ids::event_id(ID_CHANNEL, account, message_id.as_deref(), line);
    let (business, customer) = (view.business_key(), view.customer_key());
    let conversation_id = if customer.is_empty() {
        ids::conversation_id(&[ID_CHANNEL, account, &business, "call", &event_id])
    } else {
        ids::conversation_id(&[ID_CHANNEL, account, &business, &customer])
    };
    LineIds {
        event_id,
        provider_message_id: message_id.unwrap_or_default(),
        conversation_id: Some(conversation_id),
        partition_key: ids::partition_key(&[ID_CHANNEL, account, &business, &customer]),
    }
}

/// The outcome of a call: `VoiceMail` as last application wins over the disposition.
pub fn outcome(cdr: &Cdr) -> Outcome {
    if cdr.lastapp.trim().eq_ignore_ascii_case("VoiceMail") {
        return Outcome::Voicemail;
    }
    match cdr.disposition.trim().to_ascii_uppercase().as_str() {
        "ANSWERED" => Outcome::Answered,
        "NO ANSWER" | "NOANSWER" => Outcome::Missed,
        "BUSY" => Outcome::Busy,
        "FAILED" | "CONGESTION" => Outcome::Failed,
        _ => Outcome::Unspecified,
    }
}

/// Normalizes Asterisk CDR lines.
pub struct Asterisk;

impl Normalize for Asterisk {
    fn folder(&self) -> &'static str {
        "asterisk"
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn normalize(&self, raw: &RawRecord, _known: &dyn KnownEvents) -> Result<Option<ConversationEvent>, NormalizeError> {
        let malformed = |reason: String| NormalizeError::malformed(PROVIDER, reason);
        if raw.attributes.get(INCOMPLETE_ATTRIBUTE).is_some_and(|v| v == "true") {
            return Err(malformed("the line was never finished (no newline after it)".into()));
        }
        let settings = CdrSettings::from_attributes(&raw.attributes).map_err(malformed)?;
        let cdr =
            parse_line(&raw.payload, settings.columns.as_deref()).map_err(|reason| malformed(format!("not a cdr_csv line: {reason}")))?;
        let view = CallView::of(&cdr, &settings);
        if view.internal {
            return Ok(None);
        }
        let ids = ids_of(&raw.account, &raw.payload, &cdr, &view);
        let started_at = parse_time(&cdr.start, settings.timezone).map_err(malformed)?;
        let outcome = outcome(&cdr);
        let business = view.business_key();
        let customer = view.customer_key();
        let customer_shown = if customer.is_empty() {
            cdr.src.trim().to_owned()
        } else {
            customer.clone()
        };
        let (from, to) = match view.direction {
            Direction::Outbound => (business.clone(), customer_shown.clone()),
            _ => (customer_shown.clone(), business.clone()),
        };
        let agent = match view.direction {
            Direction::Outbound => channel_peer(&cdr.channel),
            _ if outcome == Outcome::Answered => channel_peer(&cdr.dstchannel),
            _ => String::new(),
        };
        let recording_reference = if outcome == Outcome::Voicemail {
            cdr.lastdata.split(',').next().unwrap_or_default().trim().to_owned()
        } else {
            String::new()
        };
        let call = CallData {
            from,
            to,
            started_at: Some(crate::webhook::unix_seconds(started_at)),
            duration: Some(prost_types::Duration {
                seconds: i64::try_from(cdr.billsec).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            outcome: outcome as i32,
            agent,
            recording_reference,
            call_id: cdr.uniqueid.clone(),
            ..Default::default()
        };
        let text = text::call(&call);
        let mut identifiers = Vec::new();
        if customer.starts_with('+') {
            identifiers.push(ContactIdentifier {
                kind: Kind::Phone as i32,
                value: customer.clone(),
                platform: String::new(),
            });
        } else if !customer.is_empty() {
            // A number that is not E.164 (a national number as the trunk sent it).
            identifiers.push(ContactIdentifier {
                kind: Kind::PlatformUserId as i32,
                value: customer.clone(),
                platform: PROVIDER.to_owned(),
            });
        }
        let participant = Participant {
            role: Role::Customer as i32,
            display_name: view.customer_name.clone(),
            identifiers,
        };
        let mut tags = vec!["call".to_owned()];
        tags.extend(text::outcome_tag(outcome).map(str::to_owned));
        Ok(Some(ConversationEvent {
            event_id: raw.event_id.clone(),
            conversation_id: ids.conversation_id.expect("a parsed line has a conversation"),
            channel: Channel::Voice as i32,
            direction: view.direction as i32,
            participants: vec![participant],
            body: Some(Body {
                text: text.clone(),
                html: String::new(),
                new_text: text,
            }),
            call: Some(call),
            tags,
            occurred_at: Some(crate::webhook::unix_seconds(started_at)),
            received_at: raw.received_at,
            normalized_at: None,
            provider: Some(ProviderReference {
                provider: PROVIDER.to_owned(),
                account: raw.account.clone(),
                message_id: ids.provider_message_id,
                thread_id: cdr.linkedid.clone(),
                reply_to: customer,
                in_reply_to: String::new(),
                references: Vec::new(),
            }),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod parse_time_tests {
    use super::{Timezone, parse_time};

    #[test]
    fn cdr_times_out_of_range_or_out_of_shape_are_refused() {
        // Leap days: every fourth year, not in a century year unless it divides by 400.
        assert_eq!(parse_time("2024-02-29 23:59:59", Timezone::UTC), Ok(1_709_251_199));
        assert!(parse_time("1900-02-29 00:00:00", Timezone::UTC).is_err());
        // Negative offsets are west of UTC; times before 1970 are negative.
        assert_eq!(
            parse_time("2026-11-22 05:15:00", Timezone::parse("-05:00").unwrap()),
            Ok(1_795_342_500)
        );
        assert_eq!(parse_time("1969-12-31 23:59:59", Timezone::UTC), Ok(-1));
        for bad in [
            "2026-11-31 00:00:00",
            "2026-11-00 00:00:00",
            "2026-00-10 00:00:00",
            "2026-11-32 00:00:00",
            "2026-11-22 10:60:00",
            "2026-11-22 10:15:61",
            // Shapes chrono alone would take.
            "2026-1-5 1:2:3",
            "+2026-11-22 10:15:00",
            " 2026-11-22 10:15:00",
            "2026-11-22  10:15:00",
            "2026-11-22\t10:15:00",
            // Garbage, multi-byte characters where digits belong.
            "",
            "garbage",
            "2026-11-22 10:15:00 ",
            "2026-11-22 10:15:00.5",
            "\u{fffd}\u{fffd}\u{fffd}-11-22 10:15:00",
            "２０２６-11-22 10:15",
        ] {
            assert!(parse_time(bad, Timezone::UTC).is_err(), "{bad:?}");
        }
    }
}
