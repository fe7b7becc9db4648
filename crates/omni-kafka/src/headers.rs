//! CloudEvents Kafka protocol binding, binary content mode: the event attributes travel as
//! `ce_*` headers and the record value is the protobuf message, so a generic consumer can route
//! on headers without decoding anything.

use std::time::SystemTime;

use rdkafka::message::{Header, Headers, OwnedHeaders};

/// The media type of every omni record value.
pub const CONTENT_TYPE: &str = "application/protobuf";

/// The CloudEvents attributes of one record.
#[derive(Clone, Debug)]
pub struct CloudEvent<'a> {
    /// `ce_id`: the omni event id (unique per source).
    pub id: &'a str,
    /// `ce_type`: the protobuf message name, for example `omni.v1.RawRecord`.
    pub kind: &'a str,
    /// `ce_source`: the producing service and instance, for example `omni/gateway/gateway-local`.
    pub source: &'a str,
    /// `ce_subject`: what the event is about (the conversation id), when known.
    pub subject: Option<&'a str>,
    /// `ce_time`: when the event happened.
    pub time: SystemTime,
}

impl CloudEvent<'_> {
    /// Renders the headers.
    pub fn to_headers(&self) -> OwnedHeaders {
        let time = prost_types::Timestamp::from(self.time).to_string();
        let headers = OwnedHeaders::new_with_capacity(7)
            .insert(Header {
                key: "ce_specversion",
                value: Some("1.0"),
            })
            .insert(Header {
                key: "ce_id",
                value: Some(self.id),
            })
            .insert(Header {
                key: "ce_type",
                value: Some(self.kind),
            })
            .insert(Header {
                key: "ce_source",
                value: Some(self.source),
            })
            .insert(Header {
                key: "ce_time",
                value: Some(time.as_str()),
            })
            .insert(Header {
                key: "content-type",
                value: Some(CONTENT_TYPE),
            });
        match self.subject {
            Some(subject) => headers.insert(Header {
                key: "ce_subject",
                value: Some(subject),
            }),
            None => headers,
        }
    }
}

/// Reads one header as UTF-8 text.
pub fn header_str<'a, H: Headers>(headers: &'a H, key: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|header| header.key == key)
        .and_then(|header| header.value)
        .and_then(|value| std::str::from_utf8(value).ok())
}

/// Every header as text (values that are not UTF-8 are rendered lossily).
pub fn headers_map<H: Headers>(headers: &H) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .map(|header| {
            (
                header.key.to_owned(),
                header.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_required_cloudevents_attributes() {
        let headers = CloudEvent {
            id: "e1",
            kind: "omni.v1.RawRecord",
            source: "omni/gateway/test",
            subject: Some("c1"),
            time: SystemTime::UNIX_EPOCH,
        }
        .to_headers();
        assert_eq!(header_str(&headers, "ce_specversion"), Some("1.0"));
        assert_eq!(header_str(&headers, "ce_id"), Some("e1"));
        assert_eq!(header_str(&headers, "ce_type"), Some("omni.v1.RawRecord"));
        assert_eq!(header_str(&headers, "ce_source"), Some("omni/gateway/test"));
        assert_eq!(header_str(&headers, "ce_subject"), Some("c1"));
        assert_eq!(header_str(&headers, "ce_time"), Some("1970-01-01T00:00:00Z"));
        assert_eq!(header_str(&headers, "content-type"), Some("application/protobuf"));
    }
}
